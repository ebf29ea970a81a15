"""Metric sinks: TensorBoard under ``logs/cardiac_dreamer/`` and one CSV at ``logs/cardiac_dreamer_csv/metrics.csv``.

Step rows carry the training losses and learning rate at logging intervals; epoch rows carry the epoch averages
and every validation metric. The CSV is appended to on resume, with its header written once.
"""
from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Dict, List, Mapping, Optional

from ..fileio import atomic_open
from ..names import CSV_COLUMNS, MONITOR
from ..run_dir import RunDirectory


class CSVMetricsWriter:
    """Appends rows with a fixed set of columns; a resumed run continues the same file under one header."""

    def __init__(self, path: Path):
        self.path = path
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if not self.path.exists() or self.path.stat().st_size == 0:
            with open(self.path, "w", newline="", encoding="utf-8") as stream:
                csv.writer(stream).writerow(CSV_COLUMNS)

    def write(self, row: Mapping[str, float]) -> None:
        with open(self.path, "a", newline="", encoding="utf-8") as stream:
            csv.writer(stream).writerow([_format(row.get(column)) for column in CSV_COLUMNS])

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
    """All rows of a metrics.csv as dicts of floats (``None`` for empty cells)."""
    if not Path(path).exists():
        return []
    with open(path, newline="", encoding="utf-8") as stream:
        return [{key: _parse(value) for key, value in row.items()} for row in csv.DictReader(stream)]


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
        for name, value in metrics.items():
            self.tensorboard.add_scalar(f"step/{name}", value, step)
        self.csv.write({"epoch": epoch, "step": step, **metrics})

    def log_epoch(self, metrics: Mapping[str, float], epoch: int, step: int) -> None:
        for name, value in metrics.items():
            self.tensorboard.add_scalar(name, value, epoch)
        self.tensorboard.flush()
        self.csv.write({"epoch": epoch, "step": step, **metrics})

    def close(self) -> None:
        self.tensorboard.close()


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
