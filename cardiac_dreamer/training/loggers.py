"""Metric sinks: TensorBoard under ``logs/cardiac_dreamer/`` and one CSV at ``logs/cardiac_dreamer_csv/metrics.csv``.

Step rows carry the training losses and learning rate at logging intervals; epoch rows carry the epoch averages
and every validation metric. The CSV is appended to on resume, with its header written once. A row is appended
whole or not at all: a failed append (a full disk) is cut back off; a kill mid-append leaves a last line without its
newline, which the writer cuts off when it reopens the file (a resume) and a reader skips, as it skips any row whose
cells do not parse, so a torn tail never costs a complete row nor crashes a resume.
"""
from __future__ import annotations

import contextlib
import csv
import io
import logging
import math
import os
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

from ..errors import OutputError
from ..io.fileio import atomic_open, cannot_write
from ..io.run_dir import RunDirectory

log = logging.getLogger(__name__)


class CSVMetricsWriter:
    """Appends rows with a fixed set of columns; a resumed run continues the same file under one header."""

    def __init__(self, path: Path, columns: Sequence[str]):
        self.path, self.columns = path, tuple(columns)
        if self.path.exists():
            drop_torn_tail(self.path)
        if not self.path.exists() or self.path.stat().st_size == 0:
            self._append(self.columns)

    def write(self, row: Mapping[str, float]) -> None:
        self._append([_format(row.get(column)) for column in self.columns])

    def _append(self, cells) -> None:
        """One line, appended whole or not at all: on a failed write the file is cut back to its old length."""
        buffer = io.StringIO()
        csv.writer(buffer).writerow(cells)
        data = buffer.getvalue().encode("utf-8")
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
        except OSError as error:
            raise OutputError(cannot_write(self.path, error)) from None
        try:
            size = os.fstat(fd).st_size
            written = 0
            while written < len(data):
                written += os.write(fd, data[written:])
        except OSError as error:
            os.ftruncate(fd, size)
            raise OutputError(cannot_write(self.path, error)) from None
        finally:
            os.close(fd)

    def truncate_after(self, step: int) -> None:
        """Drop rows logged after ``step`` (they belong to work a resume is about to redo) and damaged rows."""
        rows, skipped = _read_rows(self.path)
        kept = [row for row in rows if row.get("step") is not None and row["step"] <= step]
        if len(kept) == len(rows) and not skipped:
            return
        with atomic_open(self.path, "w", newline="") as stream:  # a kill mid-rewrite must not lose the log
            writer = csv.writer(stream)
            writer.writerow(self.columns)
            for row in kept:
                writer.writerow([_format(row.get(column)) for column in self.columns])


def drop_torn_tail(path: Path) -> None:
    """Cut a last line without its newline (an append killed mid-way) off ``path``, saying so in one log line:
    the next append would otherwise glue a whole row onto the half one."""
    try:
        with open(path, "rb+") as stream:
            size = stream.seek(0, os.SEEK_END)
            if size == 0:
                return
            stream.seek(max(0, size - 65536))
            tail = stream.read()
            if tail.endswith(b"\n"):
                return
            cut = size - len(tail) + tail.rfind(b"\n") + 1  # 0 when not even the header is whole
            stream.truncate(cut)
    except OSError as error:
        raise OutputError(cannot_write(path, error)) from None
    log.warning("%s: dropped a half-written last row of %d bytes (a write was interrupted); the complete rows are "
                "kept", path, size - cut)


def read_rows(path: Path) -> List[Dict[str, Optional[float]]]:
    """All complete rows of a metrics.csv as dicts of floats (``None`` for empty cells); a half-written last row,
    or a row whose cells are not numbers in the header's columns, is skipped with one log line."""
    return _read_rows(path)[0]


def _read_rows(path: Path) -> Tuple[List[Dict[str, Optional[float]]], int]:
    """:func:`read_rows`, and how many lines it skipped."""
    if not Path(path).exists():
        return [], 0
    text = Path(path).read_text(encoding="utf-8", errors="replace")
    complete = text[: text.rfind("\n") + 1]
    torn = int(complete != text)
    if torn:
        log.warning("%s: skipped a half-written last row (a write was interrupted)", path)
    rows, damaged = [], []
    reader = csv.DictReader(io.StringIO(complete, newline=""))
    for row in reader:
        try:
            rows.append({key: _parse(value) for key, value in row.items()})
        except (TypeError, ValueError):  # a cell too many (a list under the key None) or not a number
            damaged.append(reader.line_num)
    if damaged:
        log.warning("%s: skipped %d damaged row(s) (line %s) that do not fit the header", path, len(damaged),
                    ", ".join(map(str, damaged[:5])))
    return rows, torn + len(damaged)


def epoch_rows(path: Path) -> List[Dict[str, Optional[float]]]:
    """The per-epoch rows (those holding validation results), oldest first."""
    return [row for row in read_rows(path) if row.get("val_loss") is not None]


class MetricLogger:
    """Writes each metrics dict to TensorBoard and the CSV (in ``columns``: see
    :func:`~cardiac_dreamer.names.csv_columns`); create it on rank 0 only.

    TensorBoard gets two writers: epoch values against the epoch in ``logs/cardiac_dreamer/``, step values against
    the optimizer step in ``logs/cardiac_dreamer/steps/``. A resumed run (``resumed_at``: the epoch and the step it
    continues from) has TensorBoard drop what each logged from there on, as the CSV is cut: redone epochs and steps
    are drawn once. One writer could not do that, its purge being by step whatever the axis; so a run begun before
    the two (its step values beside its epoch values) keeps one writer and purges nothing."""

    def __init__(self, run: RunDirectory, columns: Sequence[str], resumed_at: Optional[Tuple[int, int]] = None):
        from torch.utils.tensorboard import SummaryWriter  # imported lazily: TensorBoard is slow to import

        self.csv = CSVMetricsWriter(run.metrics_csv, columns)
        steps = run.tensorboard_steps
        one_writer = not steps.exists() and any(run.tensorboard.glob("events.out.tfevents*"))
        epoch, step = resumed_at if resumed_at is not None and not one_writer else (None, None)
        self.tensorboard = SummaryWriter(log_dir=str(run.tensorboard), purge_step=epoch)
        self.step_tensorboard = self.tensorboard if one_writer else SummaryWriter(log_dir=str(steps), purge_step=step)

    def log_step(self, metrics: Mapping[str, float], epoch: int, step: int) -> None:
        with self._tensorboard_errors():
            for name, value in metrics.items():
                self.step_tensorboard.add_scalar(f"step/{name}", value, step)
        self.csv.write({"epoch": epoch, "step": step, **metrics})

    def log_epoch(self, metrics: Mapping[str, float], epoch: int, step: int) -> None:
        with self._tensorboard_errors():
            for name, value in metrics.items():
                self.tensorboard.add_scalar(name, value, epoch)
            self.tensorboard.flush()
        self.csv.write({"epoch": epoch, "step": step, **metrics})

    def close(self) -> None:
        with self._tensorboard_errors():
            for writer in {id(w): w for w in (self.tensorboard, self.step_tensorboard)}.values():
                writer.close()

    @contextlib.contextmanager
    def _tensorboard_errors(self):
        """TensorBoard's writer thread reports a full disk as whatever it caught; make it one line."""
        try:
            yield
        except (OSError, RuntimeError) as error:
            raise OutputError(cannot_write(Path(self.tensorboard.log_dir), error)) from None


def _format(value) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else str(value)
    return str(value)


def _parse(value: Optional[str]) -> Optional[float]:
    if value is None or value == "":
        return None
    number = float(value)
    return int(number) if number.is_integer() and "." not in value and "e" not in value.lower() else number
