"""Metric sinks: TensorBoard under ``logs/cardiac_dreamer/`` and one CSV at ``logs/cardiac_dreamer_csv/metrics.csv``.

Step rows carry the training losses and learning rate at logging intervals; epoch rows carry the epoch averages
and every validation metric. The CSV is appended to on resume, with its header written once. A row is appended
whole or not at all: a failed append (a full disk) is cut back off, and a reader drops a last line without its
newline (a kill mid-append), so a resume never trips over half a row.
"""
from __future__ import annotations

import contextlib
import csv
import io
import logging
import math
import os
from pathlib import Path
from typing import Dict, List, Mapping, Optional

from ..errors import OutputError
from ..fileio import atomic_open, cannot_write
from ..names import CSV_COLUMNS, MONITOR
from ..run_dir import RunDirectory

log = logging.getLogger(__name__)


class CSVMetricsWriter:
    """Appends rows with a fixed set of columns; a resumed run continues the same file under one header."""

    def __init__(self, path: Path):
        self.path = path
        if not self.path.exists() or self.path.stat().st_size == 0:
            self._append(CSV_COLUMNS)

    def write(self, row: Mapping[str, float]) -> None:
        self._append([_format(row.get(column)) for column in CSV_COLUMNS])

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
        """Drop rows logged after ``step``: they belong to work a resume is about to redo."""
        rows = read_rows(self.path)
        kept = [row for row in rows if row.get("step") is not None and row["step"] <= step]
        if len(kept) == len(rows):
            return
        with atomic_open(self.path, "w", newline="") as stream:  # a kill mid-rewrite must not lose the log
            writer = csv.writer(stream)
            writer.writerow(CSV_COLUMNS)
            for row in kept:
                writer.writerow([_format(row.get(column)) for column in CSV_COLUMNS])


def read_rows(path: Path) -> List[Dict[str, Optional[float]]]:
    """All complete rows of a metrics.csv as dicts of floats (``None`` for empty cells)."""
    if not Path(path).exists():
        return []
    text = Path(path).read_text(encoding="utf-8", errors="replace")
    complete = text[: text.rfind("\n") + 1]
    if complete != text:
        log.warning("%s: dropped an incomplete last row (a write was interrupted)", path)
    return [{key: _parse(value) for key, value in row.items()}
            for row in csv.DictReader(io.StringIO(complete, newline=""))]


def epoch_rows(path: Path) -> List[Dict[str, Optional[float]]]:
    """The per-epoch rows (those holding validation results), oldest first."""
    return [row for row in read_rows(path) if row.get(MONITOR) is not None]


class MetricLogger:
    """Writes each metrics dict to TensorBoard and the CSV; create it on rank 0 only."""

    def __init__(self, run: RunDirectory):
        from torch.utils.tensorboard import SummaryWriter  # imported lazily: TensorBoard is slow to import

        self.csv = CSVMetricsWriter(run.metrics_csv)
        self.tensorboard = SummaryWriter(log_dir=str(run.tensorboard))

    def log_step(self, metrics: Mapping[str, float], epoch: int, step: int) -> None:
        with self._tensorboard_errors():
            for name, value in metrics.items():
                self.tensorboard.add_scalar(f"step/{name}", value, step)
        self.csv.write({"epoch": epoch, "step": step, **metrics})

    def log_epoch(self, metrics: Mapping[str, float], epoch: int, step: int) -> None:
        with self._tensorboard_errors():
            for name, value in metrics.items():
                self.tensorboard.add_scalar(name, value, epoch)
            self.tensorboard.flush()
        self.csv.write({"epoch": epoch, "step": step, **metrics})

    def close(self) -> None:
        with self._tensorboard_errors():
            self.tensorboard.close()

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
