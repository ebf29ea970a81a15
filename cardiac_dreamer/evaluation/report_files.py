"""The files an evaluation leaves for the user: ``metrics.json``, ``predictions.csv`` and three plots."""
from __future__ import annotations

import csv
import logging
import os
from pathlib import Path
from typing import List, Union

from ..geometry import AXIS_NAMES, AXIS_UNITS, unwrapped_poses
from ..io.fileio import atomic_open, write_json
from .metrics import mae_per_axis
from .report import EvaluationReport

log = logging.getLogger(__name__)

PathLike = Union[str, os.PathLike]
PLOT_FILES = ("predicted_vs_true.png", "error_histograms.png", "per_patient_mae.png")
METRICS_FILE, PREDICTIONS_FILE = "metrics.json", "predictions.csv"
REPORT_FILES = (METRICS_FILE, PREDICTIONS_FILE, *PLOT_FILES)  # what an evaluation writes


def write_report(report: EvaluationReport, output_dir: PathLike) -> List[Path]:
    """Write ``metrics.json``, ``predictions.csv`` and the three plots into ``output_dir``; the written paths."""
    from .. import plots  # matplotlib only when figures are drawn: inference never needs it

    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    per_patient = {patient: mae_per_axis(entry["guidance"])
                   for patient, entry in report.metrics["per_patient"].items()}
    written = [
        write_json(output_dir / METRICS_FILE, report.metrics),
        _write_predictions(report, output_dir),
        plots.plot_predicted_vs_true(
            output_dir / PLOT_FILES[0], report.labels, report.guidance, title="guidance (image alone)"
        ),
        plots.plot_error_histograms(output_dir / PLOT_FILES[1], report.labels, report.guidance),
        plots.plot_per_patient_mae(output_dir / PLOT_FILES[2], per_patient),
    ]
    log.info("evaluation results written to %s", output_dir)
    return written


def _write_predictions(report: EvaluationReport, output_dir: Path) -> Path:
    """``predictions.csv``: one row per pair, the label and each prediction per axis in mm and degrees (the
    composed columns are empty for direct models), each predicted angle written within 180 deg of its label, so a
    column's difference is the error the metrics score (a label of -179 deg read as 179 is written as -181)."""
    path = output_dir / PREDICTIONS_FILE
    kinds = ("label", "guidance", "composed")
    columns = [f"{kind}_{name}_{unit}" for kind in kinds for name, unit in zip(AXIS_NAMES, AXIS_UNITS)]
    guidance, composed = (None if predicted is None else unwrapped_poses(predicted, around=report.labels)
                          for predicted in (report.guidance, report.composed))  # [N, 6] each
    with atomic_open(path, "w") as stream:
        writer = csv.writer(stream, lineterminator="\n")
        writer.writerow(["patient_id", "folder", "entry_index", "image_t1", "image_t2", *columns])
        for row in range(len(report.patient_ids)):
            values = [report.labels[row], guidance[row], composed[row] if composed is not None else [None] * 6]
            writer.writerow([
                report.patient_ids[row], report.folders[row], report.indices[row], *report.image_paths[row],
                *("" if value is None else f"{value:.4f}" for vector in values for value in vector),
            ])
    return path
