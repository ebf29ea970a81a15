"""Evaluate a trained model on a patient split: predictions, metrics in physical units, files and a table.

Two predictions are scored for every pair: the *main task*, at1 composed back from the world model's imagined t2
pose through the real move (what training optimizes), and *direct guidance*, the image alone with a physical zero
move (what a probe-guidance user gets from one frame). For the ``"direct"`` variant the two are the same.
"""
from __future__ import annotations

import csv
import dataclasses
import functools
import logging
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from .. import plots
from ..atomic import atomic_open, write_json
from ..config import Config, LossConfig
from ..data.dataset import TransitionsDataset
from ..data.prepare import prepare_data
from ..data.normalization import NormalizationStats
from ..data.records import TransitionRecord
from ..data.splits import SPLIT_NAMES, PatientSplit
from ..data.transforms import images_to_float
from ..errors import CheckpointError, ConfigError, DataError
from ..geometry import AXIS_NAMES, AXIS_UNITS
from ..training.checkpoints import load_checkpoint
from ..training.precision import select_device
from ..training.run_dir import RunDirectory, ensure_writable, timestamped_directory
from .metrics import DEFINITIONS, axis_key, mae_per_axis, summarize, summarize_by_patient
from .predictor import model_from_checkpoint, zero_moves

log = logging.getLogger(__name__)

SPLIT_CHOICES = SPLIT_NAMES + ("all",)
PathLike = Union[str, os.PathLike]
PLOT_FILES = ("predicted_vs_true.png", "error_histograms.png", "per_patient_mae.png")


@dataclass
class EvaluationReport:
    """Everything an evaluation produced, one row per pair; poses are at1 in mm and degrees."""

    labels: np.ndarray  # [N, 6] true at1
    predictions: np.ndarray  # [N, 6] main task: composed at1 through the real move
    direct_predictions: np.ndarray  # [N, 6] direct guidance: image alone, zero move
    main_losses: np.ndarray  # [N] SmoothL1 on standardized at1, mean over the axes
    direct_losses: np.ndarray  # [N]
    patient_ids: List[str]
    folders: List[str]
    indices: List[int]  # entry index in the patient's transitions file
    image_paths: List[Tuple[str, str]]  # (t1, t2) as written in the transitions file
    metadata: Dict[str, Any] = field(default_factory=dict)  # checkpoint, split, data directory...

    @functools.cached_property
    def metrics(self) -> Dict[str, Any]:
        """The content of ``metrics.json``: counts, the two tasks, the same per patient, and what each key means."""
        per_patient_main = summarize_by_patient(self.labels, self.predictions, self.patient_ids, self.main_losses)
        per_patient_direct = summarize_by_patient(
            self.labels, self.direct_predictions, self.patient_ids, self.direct_losses
        )
        return {
            **self.metadata,
            "samples": len(self.patient_ids),
            "patients": len(per_patient_main),
            "main": summarize(self.labels, self.predictions, self.main_losses),
            "direct": summarize(self.labels, self.direct_predictions, self.direct_losses),
            "per_patient": {
                patient: {
                    "samples": per_patient_main[patient]["samples"],
                    "main": per_patient_main[patient],
                    "direct": per_patient_direct[patient],
                }
                for patient in per_patient_main
            },
            "definitions": {
                "main": "main task: at1 composed from the imagined t2 pose through the real move and image at t1",
                "direct": "direct single-frame guidance: at1 from the image at t1 alone, with a zero move",
                **DEFINITIONS,
            },
        }

    def summary_table(self) -> str:
        """A few lines for the terminal: per-axis MAE / RMSE / direction accuracy of both tasks, then totals."""
        metrics = self.metrics
        tasks = (metrics["main"], metrics["direct"])
        where = f" on the {self.metadata['split']} split" if "split" in self.metadata else ""
        lines = [
            f"evaluation{where}: {metrics['samples']} samples, {metrics['patients']} patients",
            f"{'':24}{'main task (composed at1)':>29}{'direct (image alone)':>29}",
            f"{'':24}" + f"{'MAE':>11}{'RMSE':>9}{'dir.acc':>9}" * 2,
        ]
        for axis, (name, unit) in enumerate(zip(AXIS_NAMES, AXIS_UNITS)):
            lines.append(f"{name + ' (' + unit + ')':24}" + "".join(_axis_cells(task, axis) for task in tasks))
        for label, key in (
            ("translation error (mm)", "translation_error_mm"),
            ("rotation error (deg)", "rotation_error_deg"),
            ("main-task loss", "main_task_loss"),
        ):
            lines.append(f"{label:24}" + "".join(f"{_number(task[key]):>11}{'':18}" for task in tasks).rstrip())
        return "\n".join(lines)


@torch.inference_mode()
def evaluate(
    model: torch.nn.Module,
    dataset: TransitionsDataset,
    device: Union[str, torch.device] = "cpu",
    batch_size: int = 32,
    progress: bool = True,
    loss_cfg: Optional[LossConfig] = None,
) -> EvaluationReport:
    """Run ``model`` over ``dataset`` (in order, fp32, eval mode) and score both tasks.

    The model's own normalization statistics turn its standardized outputs into mm and degrees; the labels are
    the records' physical values. The model's train/eval mode is restored afterwards.
    """
    device = select_device(device)
    beta = (loss_cfg or LossConfig()).smooth_l1_beta
    stats: NormalizationStats = model.normalization
    same_task = getattr(model, "dreamer", None) is None  # the "direct" variant ignores the move
    was_training = model.training
    model.to(device).eval()
    outputs: Dict[str, List[torch.Tensor]] = {"main": [], "direct": [], "main_loss": [], "direct_loss": []}
    order: List[int] = []
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=0)
    try:
        for batch in tqdm(loader, desc="evaluate", unit="batch", dynamic_ncols=True,
                          disable=True if not progress else None):
            images = batch["image_t1"].to(device)
            if images.dtype == torch.uint8:
                images = images_to_float(images)
            move, target = batch["action_change"].to(device), batch["at1"].to(device)
            main = model(images, move)["at1"].float()  # [B, 6] standardized
            direct = main if same_task else model(images, zero_moves(stats, len(move)).to(device))["at1"].float()
            for name, prediction in (("main", main), ("direct", direct)):
                outputs[name].append(prediction.cpu())
                loss = F.smooth_l1_loss(prediction, target.float(), beta=beta, reduction="none").mean(-1)  # [B]
                outputs[f"{name}_loss"].append(loss.cpu())
            order.extend(batch["index"].tolist())
    finally:
        model.train(was_training)
    records: List[TransitionRecord] = [dataset.records[i] for i in order]
    physical = {name: stats.pose.denormalize(torch.cat(outputs[name]).double().numpy()) for name in ("main", "direct")}
    return EvaluationReport(
        labels=np.array([r.at1 for r in records], dtype=np.float64).reshape(-1, 6),
        predictions=physical["main"],
        direct_predictions=physical["direct"],
        main_losses=torch.cat(outputs["main_loss"]).double().numpy(),
        direct_losses=torch.cat(outputs["direct_loss"]).double().numpy(),
        patient_ids=[r.patient_id for r in records],
        folders=[r.folder for r in records],
        indices=[r.index for r in records],
        image_paths=[(r.image_t1_rel, r.image_t2_rel) for r in records],
    )


def write_report(report: EvaluationReport, output_dir: PathLike) -> List[Path]:
    """Write ``metrics.json``, ``predictions.csv`` and the three plots into ``output_dir``; the written paths."""
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    per_patient = {patient: mae_per_axis(entry["main"]) for patient, entry in report.metrics["per_patient"].items()}
    written = [
        write_json(output_dir / "metrics.json", _json_safe(report.metrics)),
        _write_predictions(report, output_dir),
        plots.plot_predicted_vs_true(
            output_dir / PLOT_FILES[0], report.labels, report.predictions, title="main task (composed at1)"
        ),
        plots.plot_error_histograms(output_dir / PLOT_FILES[1], report.labels, report.predictions),
        plots.plot_per_patient_mae(output_dir / PLOT_FILES[2], per_patient),
    ]
    log.info("evaluation results written to %s", output_dir)
    return written


def evaluate_checkpoint(
    checkpoint_path: PathLike,
    split: str = "test",
    data_dir: Optional[PathLike] = None,
    patients: Optional[Sequence[str]] = None,
    output_dir: Optional[PathLike] = None,
    batch_size: int = 32,
    device: Union[str, torch.device] = "auto",
    progress: bool = True,
) -> Tuple[EvaluationReport, Path]:
    """Evaluate a checkpoint on a split of the patients it recorded, with its normalization statistics, and write
    the report (default: ``<run>/evaluation_<split>_<timestamp>/``). What ``cardiac-evaluate`` does.

    ``split`` is ``train``, ``val``, ``test`` or ``all`` (the three together); ``patients`` narrows it to some of
    its patients; ``data_dir`` defaults to the directory recorded at training time.
    """
    if split not in SPLIT_CHOICES:
        raise ConfigError(f"split must be one of {', '.join(SPLIT_CHOICES)}, got {split!r}")
    if batch_size <= 0:
        raise ConfigError(f"batch_size must be > 0, got {batch_size}")
    device = select_device(device)
    checkpoint_path = Path(checkpoint_path)
    payload = load_checkpoint(checkpoint_path, map_location="cpu")
    if "split" not in payload:
        raise CheckpointError(f"{checkpoint_path}: checkpoint records no patient split; it cannot be evaluated")
    model = model_from_checkpoint(payload, checkpoint_path)
    config = Config.from_dict(payload["config"], source=f"{checkpoint_path}: config")
    patient_split = PatientSplit.from_dict(payload["split"])
    chosen = set(_chosen_patients(patient_split, split, patients, checkpoint_path))
    recorded_dir = payload.get("data_dir") or config.data.data_dir
    data_cfg = dataclasses.replace(config.data, data_dir=str(data_dir or recorded_dir))
    prepared = prepare_data(
        data_cfg, split=patient_split, stats=NormalizationStats.from_dict(payload["normalization"])
    )
    records = [record for name in SPLIT_NAMES for record in prepared.records[name] if record.patient_id in chosen]
    dataset = TransitionsDataset(
        records, prepared.stats, image_size=data_cfg.image_size, cache_images=data_cfg.cache_images,
        cache_budget_mb=data_cfg.cache_budget_mb, normalize_images=False,
    )
    output_dir = Path(output_dir) if output_dir is not None else timestamped_directory(
        RunDirectory.of_checkpoint(checkpoint_path).root, f"evaluation_{split}")
    ensure_writable(output_dir)
    report = evaluate(model, dataset, device, batch_size, progress, config.loss)
    report.metadata = {
        "checkpoint": str(checkpoint_path.resolve()),
        "epoch": payload.get("epoch"),
        "variant": config.model.variant,
        "split": split,
        "data_dir": str(Path(data_cfg.data_dir).resolve()),
        "evaluated": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    write_report(report, output_dir)
    return report, output_dir


def _chosen_patients(
    patient_split: PatientSplit, split: str, patients: Optional[Sequence[str]], checkpoint_path: Path
) -> List[str]:
    """The patients of ``split`` (every split for ``all``), narrowed to ``patients``; DataError when none."""
    names = SPLIT_NAMES if split == "all" else (split,)
    in_split = [patient for name in names for patient in getattr(patient_split, name)]
    if not in_split:
        counts = ", ".join(f"{name}: {len(getattr(patient_split, name))}" for name in SPLIT_NAMES)
        raise DataError(
            f"{checkpoint_path}: the {split} split of this checkpoint has no patients ({counts}); choose another split"
        )
    if not patients:
        return in_split
    unknown = [patient for patient in patients if patient not in in_split]
    if unknown:
        raise DataError(
            f"{checkpoint_path}: patient(s) {', '.join(unknown)} not in the {split} split "
            f"(its patients: {', '.join(in_split)})"
        )
    return [patient for patient in in_split if patient in set(patients)]


def _write_predictions(report: EvaluationReport, output_dir: Path) -> Path:
    """``predictions.csv``: one row per pair, labels and both predictions per axis in mm and degrees."""
    path = output_dir / "predictions.csv"
    columns = [
        f"{kind}_{name}_{unit}" for kind in ("label", "pred", "direct") for name, unit in zip(AXIS_NAMES, AXIS_UNITS)
    ]
    with atomic_open(path, "w") as stream:
        writer = csv.writer(stream, lineterminator="\n")
        writer.writerow(["patient_id", "folder", "entry_index", "image_t1", "image_t2", *columns])
        for row in range(len(report.patient_ids)):
            values = np.concatenate([report.labels[row], report.predictions[row], report.direct_predictions[row]])
            writer.writerow([
                report.patient_ids[row], report.folders[row], report.indices[row], *report.image_paths[row],
                *(f"{value:.4f}" for value in values),
            ])
    return path


def _json_safe(value: Any) -> Any:
    """NaN and infinities become null: JSON has no spelling for them, and readers choke on ``NaN``."""
    if isinstance(value, dict):
        return {key: _json_safe(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(item) for item in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _number(value: Optional[float]) -> str:
    return "n/a" if value is None or not math.isfinite(value) else f"{value:.4g}"


def _axis_cells(task: Dict[str, Any], axis: int) -> str:
    accuracy = task[f"direction_accuracy_{AXIS_NAMES[axis]}"]
    accuracy_text = "n/a" if accuracy is None else f"{100 * accuracy:.1f}%"
    return f"{_number(task[axis_key('mae', axis)]):>11}{_number(task[axis_key('rmse', axis)]):>9}{accuracy_text:>9}"
