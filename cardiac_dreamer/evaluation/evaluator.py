"""Evaluate a trained model on a patient split: predictions, metrics in physical units, files and a table.

Three predictions of at1 are scored for every pair:

* ``guidance``: the image alone (``head(backbone(image_t1))``), what a sonographer asking for guidance gets, and
  the headline; for every variant;
* ``composed``: the world model's imagined t2 pose with the *real* t1 -> t2 move undone. It uses the future move,
  which a sonographer asking for guidance does not have, so it is reported beside the guidance, never instead;
  the ``"direct"`` variant has none;
* ``train_mean``: the training pairs' mean at1, the baseline any guidance must beat by a margin (``evaluate``
  alone has only the model's pose mean, which also counts at2);
* ``baselines.pixel_ridge``: a ridge regression on pooled pixels fitted on the checkpoint's training patients
  (:mod:`cardiac_dreamer.evaluation.baselines`), what a linear model makes of the same images.

World models also get their diagnostics (:mod:`.diagnostics`): the move-transfer slopes, and how well the dreamed
features predict the target encoder's view of image t2.
"""
from __future__ import annotations

import csv
import dataclasses
import functools
import logging
import math
import numbers
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from .baselines import PixelRidge
from ..io.checkpoint import ModelCheckpoint
from ..config import LossConfig
from ..data.dataset import TransitionsDataset
from ..data.image_check import verify_undecoded_images
from ..data.prepare import dataset_from_config, prepare_data
from ..data.records import TransitionRecord
from ..runtime.devices import select_device
from ..errors import CheckpointError, ConfigError
from ..io.fileio import atomic_open, write_json
from ..geometry import AXIS_NAMES, AXIS_UNITS
from ..losses import per_sample_pose_loss
from ..models.registry import can_imagine
from ..models.system import GuidanceModel
from ..names import SPLIT_CHOICES, SPLIT_NAMES
from ..io.run_dir import RunDirectory, removed_if_left_empty, report_directory
from ..task import GuidanceTask, LatentTarget
from .diagnostics import WorldModelErrors, move_transfer_slopes
from .loading import load_run
from .metrics import DEFINITIONS, axis_key, mae_per_axis, summarize, summarize_by_patient
from .sequence import sequence_line, sequence_metrics

log = logging.getLogger(__name__)

PathLike = Union[str, os.PathLike]
PLOT_FILES = ("predicted_vs_true.png", "error_histograms.png", "per_patient_mae.png")
TASK_DEFINITIONS = {
    "guidance": "at1 from the image at t1 alone: the guidance a sonographer gets from the current frame (the "
    "headline; -at1 is the move to the view under additive labels)",
    "composed": "at1 from the world model's imagined t2 pose with the real t1->t2 move undone: uses the future "
    "move, which guidance does not have; null for the direct variant",
    "train_mean": "the training pairs' mean at1 for every sample: the baseline guidance must beat",
    "guidance_vs_mean": "guidance MAE / train_mean MAE per axis, and averaged over the six axes (lower is better; "
    "1.0 is no better than predicting the mean)",
    "move_transfer_slope": "world models: (at2(move) - at2(0)) / move per axis over up to 64 evaluated images, for "
    "random moves of 2 training move stds along that axis; near 1 when the model uses the move, 0 when it ignores it",
    "baselines.pixel_ridge": "ridge regression from the t1 image (grayscale at the model's size, averaged over "
    "16x16, 8x8 and 4x4 grids of cells, standardized) to at1, fitted on every distinct t1 frame of the checkpoint's "
    "training patients, its penalty per axis chosen by cross-validation over those patients only; null when it "
    "could not be fitted",
    "guidance_vs_pixel_ridge": "guidance MAE / pixel ridge MAE per axis, and averaged over the six axes (below 1.0: "
    "the network reads more from the image than a linear model of its pooled pixels)",
    "guidance_sequence": "checkpoints with a sequential estimator (model.sequence_frames K): at1 of every "
    "numbered frame of the evaluated sweeps from it and the K-1 frames before it in its sweep with the moves since "
    "(from the labels, as a tracker reports them), the guidance keys plus frames; single_frame: the image-only "
    "guidance on the same frames; vs_single_frame: sequential / single-frame translation and rotation errors; "
    "baselines.moves_only: a ridge from the moves of the K-1 earlier frames to the present (and which exist) to "
    "at1, no image, fitted on the training patients' chains (null without them; like the pixel ridge, it has seen "
    "the training patients when they are evaluated): what the moves alone say",
    "world_model.latent_error": "world models: mean latent-loss distance (SmoothL1 between channel-layer-normalized "
    "feature maps, the latent loss's units) to the EMA target encoder's view of image t2, of: dreamed (the world "
    "model's latent prediction from image t1 and the move), dreamed_without_move (the same with a zero move: what "
    "the move adds is the gap between the two), copy (the backbone's t1 features unchanged: predicting "
    "no change), target_t1 (the target encoder's view of image t1); dreamed_vs_copy below 1 means the world model "
    "predicts better than no change; by_move_quartile: the same for the pairs in each quarter of move sizes (size: "
    "norm of the move in training move stds; translation and rotation ranges in mm and degrees); null with a note "
    "when the checkpoint holds no target encoder",
    "world_model.at2_error": "world models: MAE per axis of at2 against the true at2, in mm and degrees: dreamed "
    "(the head on the dreamed features) and at1_plus_move (the image-only at1 composed with the true move, what "
    "arithmetic gives without a world model)",
}
SLOPE_IMAGES = 64


@dataclass
class EvaluationReport:
    """Everything an evaluation produced, one row per pair; poses are at1 in mm and degrees."""

    labels: np.ndarray  # [N, 6] true at1
    guidance: np.ndarray  # [N, 6] image alone
    composed: Optional[np.ndarray]  # [N, 6] imagined at2 with the real move undone; None for direct models
    train_mean: np.ndarray  # [6] the training pairs' mean at1 (evaluate alone: the model's mean of at1 and at2)
    guidance_losses: np.ndarray  # [N] SmoothL1 in units of the training std, mean over the axes
    composed_losses: Optional[np.ndarray]  # [N]
    patient_ids: List[str]
    folders: List[str]
    indices: List[int]  # entry index in the patient's transitions file
    image_paths: List[Tuple[str, str]]  # (t1, t2) as written in the transitions file
    move_transfer_slope: Optional[Dict[str, float]] = None  # per axis, world models only
    world_model: Optional[Dict[str, Any]] = None  # WorldModelErrors.result(), world models only
    baselines: Dict[str, Optional[np.ndarray]] = field(default_factory=dict)  # name -> [N, 6] or None (not fitted)
    metadata: Dict[str, Any] = field(default_factory=dict)  # checkpoint, split, data directory...
    sequence: Optional[Dict[str, Any]] = None  # sequence_metrics(): checkpoints with a sequential estimator only

    def __repr__(self) -> str:
        """One line for a notebook cell (the arrays are thousands of numbers): what was evaluated."""
        patients = sorted(set(self.patient_ids))
        return (f"EvaluationReport({len(self.labels)} pairs of {len(patients)} patients: {', '.join(patients[:4])}"
                f"{' ...' if len(patients) > 4 else ''}; .metrics holds the figures)")

    @property
    def mean_predictions(self) -> np.ndarray:
        return np.tile(self.train_mean, (len(self.labels), 1))

    def predictions(self) -> Dict[str, Tuple[np.ndarray, Optional[np.ndarray]]]:
        """``{task: (predictions [N, 6], per-sample losses or None)}`` for the tasks this model has."""
        tasks = {"guidance": (self.guidance, self.guidance_losses), "train_mean": (self.mean_predictions, None)}
        if self.composed is not None:
            tasks["composed"] = (self.composed, self.composed_losses)
        return tasks

    @functools.cached_property
    def metrics(self) -> Dict[str, Any]:
        """The content of ``metrics.json``: counts, each task overall and per patient, the ratio of the guidance to
        the mean baseline, and what each key means."""
        tasks = self.predictions()
        overall = {task: summarize(self.labels, predicted, losses) for task, (predicted, losses) in tasks.items()}
        by_patient = {task: summarize_by_patient(self.labels, predicted, self.patient_ids, losses)
                      for task, (predicted, losses) in tasks.items()}
        patients = sorted(by_patient["guidance"])
        baselines = {name: summarize(self.labels, predicted) if predicted is not None else None
                     for name, predicted in self.baselines.items()}
        baselines_by_patient = {name: summarize_by_patient(self.labels, predicted, self.patient_ids)
                                for name, predicted in self.baselines.items() if predicted is not None}
        ridge = baselines.get("pixel_ridge")
        return {
            **self.metadata,
            "samples": len(self.patient_ids),
            "patients": len(patients),
            "guidance": overall["guidance"],
            "composed": overall.get("composed"),
            "train_mean": overall["train_mean"],
            "guidance_vs_mean": mean_ratio(overall["guidance"], overall["train_mean"]),
            "baselines": baselines,
            "guidance_vs_pixel_ridge": mean_ratio(overall["guidance"], ridge) if ridge else None,
            "move_transfer_slope": self.move_transfer_slope,
            "world_model": self.world_model,
            "per_patient": {
                patient: {
                    "samples": by_patient["guidance"][patient]["samples"],
                    **{task: by_patient[task][patient] for task in by_patient},
                    "guidance_vs_mean": mean_ratio(by_patient["guidance"][patient],
                                                   by_patient["train_mean"][patient]),
                    "baselines": {name: values[patient] for name, values in baselines_by_patient.items()},
                }
                for patient in patients
            },
            **({"guidance_sequence": self.sequence} if self.sequence is not None else {}),
            "definitions": {**TASK_DEFINITIONS, **DEFINITIONS},
        }

    def summary_table(self) -> str:
        """A few lines for the terminal: per-axis MAE, RMSE, direction accuracy and the ratios to the mean and to the
        pixel ridge of the guidance, the composed prediction's MAE beside it, then the totals, and last the lines a
        user reads first: the guidance against both baselines and, for world models, the diagnostics."""
        metrics = self.metrics
        guidance, composed, ratio = metrics["guidance"], metrics["composed"], metrics["guidance_vs_mean"]
        ridge = metrics["guidance_vs_pixel_ridge"] or {}
        where = f" on the {self.metadata['split']} split" if "split" in self.metadata else ""
        lines = [
            f"evaluation{where}: {metrics['samples']} samples, {metrics['patients']} patients",
            f"{'':24}{'guidance (image alone)':>29}{'vs predicting':>15}{'vs pixel':>10}{'composed with':>16}",
            f"{'':24}{'MAE':>11}{'RMSE':>9}{'dir.acc':>9}{'the mean':>15}{'ridge':>10}{'the true move':>16}",
        ]
        for axis, (name, unit) in enumerate(zip(AXIS_NAMES, AXIS_UNITS)):
            key = axis_key("mae", axis)
            lines.append(f"{name + ' (' + unit + ')':24}{_axis_cells(guidance, axis)}"
                         f"{_ratio_text(ratio[key]):>15}{_ratio_text(ridge.get(key)):>10}"
                         f"{_number(composed[key] if composed else None):>16}")
        for label, key in (
            ("translation error (mm)", "translation_error_mm"),
            ("rotation error (deg)", "rotation_error_deg"),
            ("main-task loss", "main_task_loss"),
        ):
            lines.append(f"{label:24}{_number(guidance[key]):>11}{'':43}"
                         f"{_number(composed[key] if composed else None):>16}")
        if self.move_transfer_slope:
            lines.append("world model move-transfer slope (1 = the imagined pose moves by the move): " +
                         ", ".join(f"{axis} {slope:.2f}" for axis, slope in self.move_transfer_slope.items()))
        return "\n".join(lines + self.headline())

    def headline(self) -> List[str]:
        """The guidance against the training mean and the pixel ridge and, for world models, the dreamed / copy
        latent error: the closing lines of every evaluation and of the demo."""
        metrics = self.metrics
        lines = [_ratio_line("predicting the training mean", metrics["guidance_vs_mean"])]
        if metrics["guidance_vs_pixel_ridge"]:
            lines.append(_ratio_line("the pixel ridge", metrics["guidance_vs_pixel_ridge"]))
        else:
            lines.append("guidance MAE vs the pixel ridge: n/a (the ridge could not be fitted on the training "
                         "patients)")
        if self.sequence is not None:
            lines.append(sequence_line(self.sequence))
        world = self.world_model
        if world is not None:
            latent = world["latent_error"]
            if latent is None:
                lines.append(f"world model latent error: n/a ({world['note']})")
            else:
                lines.append(f"world model latent error vs the target's view of t2: dreamed {latent['dreamed']:.4g}, "
                             f"copy of t1 {latent['copy']:.4g}, dreamed / copy {_ratio_text(latent['dreamed_vs_copy'])}"
                             " (below 1: the world model predicts better than no change)")
        return lines


def _ratio_line(baseline: str, ratio: Dict[str, Any]) -> str:
    return (f"guidance MAE vs {baseline}: {_ratio_text(ratio['mean'])} averaged over the six axes, "
            f"{_ratio_text(ratio['worst'])} on the worst axis ({ratio['worst_axis']})")


def mean_ratio(task: Dict[str, Any], baseline: Dict[str, Any]) -> Dict[str, Any]:
    """MAE of ``task`` / MAE of ``baseline`` per axis, their mean over the axes, and the worst axis."""
    ratios = {}
    for axis in range(len(AXIS_NAMES)):
        key = axis_key("mae", axis)
        ratios[key] = task[key] / baseline[key] if baseline[key] else None
    finite = {key: value for key, value in ratios.items() if value is not None}
    worst = max(finite, key=finite.get) if finite else None
    return {**ratios, "mean": float(np.mean(list(finite.values()))) if finite else None,
            "worst": finite.get(worst), "worst_axis": worst}


@torch.inference_mode()
def evaluate(
    model: GuidanceModel,
    dataset: TransitionsDataset,
    device: Union[str, torch.device] = "cpu",
    batch_size: int = 32,
    progress: bool = True,
    loss_cfg: Optional[LossConfig] = None,
    target_encoder: Optional[LatentTarget] = None,
    target_note: str = "no target encoder given",
) -> EvaluationReport:
    """Run ``model`` over ``dataset`` (in order, fp32, eval mode) and score each prediction of at1.

    The model speaks mm and degrees; the labels are the records' physical values. The model's train/eval mode is
    restored afterwards. World models also get their diagnostics; the latent errors need the latent loss's
    ``target_encoder`` (without one, ``target_note`` says why in their place).
    """
    device = select_device(device)
    task = GuidanceTask(model, loss_cfg or LossConfig(), device)
    beta = task.loss_cfg.smooth_l1_beta
    was_training = model.training
    model.to(device).eval()
    collected: Dict[str, List[torch.Tensor]] = {"guidance": [], "composed": [], "guidance_loss": [],
                                                "composed_loss": []}
    order: List[int] = []
    world = None
    if can_imagine(model):
        if target_encoder is not None:
            target_encoder.encoder.to(device)
        world = WorldModelErrors(target_encoder, task.loss_cfg.smooth_l1_beta, model.config.composition,
                                 note=target_note)
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=0)
    try:
        for raw in tqdm(loader, desc="evaluate", unit="batch", dynamic_ncols=True,
                        disable=True if not progress else None):
            batch = task.prepare_batch(raw, train=False)
            outputs = task.forward(model, batch)
            for name, key in (("guidance", "at1"), ("composed", "at1_composed")):
                if key in outputs:
                    collected[name].append(outputs[key].double().cpu())
                    loss = per_sample_pose_loss(outputs[key], batch["at1"], model.pose_std, beta)  # [B]
                    collected[f"{name}_loss"].append(loss.double().cpu())
            if world is not None:
                world.add(model, batch, outputs)
            order.extend(raw["index"].tolist())
    finally:
        model.train(was_training)
    slopes = None
    if can_imagine(model):
        first = task.prepare_batch(next(iter(DataLoader(dataset, batch_size=SLOPE_IMAGES))), train=False)
        slopes = dict(zip(AXIS_NAMES, move_transfer_slopes(model, first["image_t1"])))
    records: List[TransitionRecord] = [dataset.records[i] for i in order]
    stacked = {name: torch.cat(values).numpy() if values else None for name, values in collected.items()}
    return EvaluationReport(
        labels=np.array([r.at1 for r in records], dtype=np.float64).reshape(-1, 6),
        guidance=stacked["guidance"],
        composed=stacked["composed"],
        train_mean=model.pose_mean.double().cpu().numpy(),
        guidance_losses=stacked["guidance_loss"],
        composed_losses=stacked["composed_loss"],
        patient_ids=[r.patient_id for r in records],
        folders=[r.folder for r in records],
        indices=[r.index for r in records],
        image_paths=[(r.image_t1_rel, r.image_t2_rel) for r in records],
        move_transfer_slope=slopes,
        world_model=world.result() if world is not None else None,
    )


def write_report(report: EvaluationReport, output_dir: PathLike) -> List[Path]:
    """Write ``metrics.json``, ``predictions.csv`` and the three plots into ``output_dir``; the written paths."""
    from .. import plots  # matplotlib only when figures are drawn: inference never needs it

    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    per_patient = {patient: mae_per_axis(entry["guidance"])
                   for patient, entry in report.metrics["per_patient"].items()}
    written = [
        write_json(output_dir / "metrics.json", report.metrics),
        _write_predictions(report, output_dir),
        plots.plot_predicted_vs_true(
            output_dir / PLOT_FILES[0], report.labels, report.guidance, title="guidance (image alone)"
        ),
        plots.plot_error_histograms(output_dir / PLOT_FILES[1], report.labels, report.guidance),
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

    ``split`` is ``train``, ``val``, ``test`` or ``all`` (the three together); ``patients`` (a list, or one
    comma-separated string as the command line takes it) narrows it to some of its patients; ``data_dir`` defaults
    to the directory recorded at training time.
    """
    if split not in SPLIT_CHOICES:
        raise ConfigError(f"split must be one of {', '.join(SPLIT_CHOICES)}, got {split!r}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, numbers.Integral) or batch_size <= 0:
        raise ConfigError(f"batch_size must be a positive integer, got {batch_size!r}")
    if isinstance(patients, str):
        patients = [name.strip() for name in patients.split(",") if name.strip()]
    device = select_device(device)
    run = load_run(checkpoint_path)
    model, config, checkpoint, checkpoint_path, patient_split = run.model, run.config, run.checkpoint, run.path, run.split
    if patient_split is None:
        raise CheckpointError(f"{checkpoint_path}: checkpoint records no patient split; it cannot be evaluated")
    chosen = set(patient_split.select(split, patients, checkpoint.grouping, str(checkpoint_path)))
    trained_on = sorted(chosen & set(patient_split.train))
    if trained_on:
        log.warning("evaluating patients the model trained on (%s): their figures say little about new patients "
                    "(the test split holds those)", ", ".join(trained_on))
    log.info("evaluating %s on the %s split", checkpoint_path, split)
    data_cfg = dataclasses.replace(config.data, data_dir=str(data_dir or checkpoint.data_dir or config.data.data_dir))
    prepared = prepare_data(data_cfg, split=patient_split, grouping=checkpoint.grouping)
    records = [record for name in SPLIT_NAMES for record in prepared.records[name] if record.patient_id in chosen]
    dataset = dataset_from_config(records, data_cfg)
    verify_undecoded_images([dataset], data_cfg.image_size)
    made_here = output_dir is None or not Path(output_dir).exists()
    output_dir = report_directory(output_dir, RunDirectory.of_checkpoint(checkpoint_path).root / f"evaluation_{split}",
                                  [Path(data_cfg.data_dir)], "evaluation output")
    with removed_if_left_empty(output_dir, made_here):
        target, target_note = _target_encoder(checkpoint, model, checkpoint_path)
        report = evaluate(model, dataset, device, batch_size, progress, config.loss, target, target_note)
        train = prepared.labelled_training_records()  # label-scarce runs: the ridge gets the labels the model had
        if train:  # the mean of what is predicted, at1, as --cv's train_mean (the model's pose mean also counts at2)
            report.train_mean = np.mean([record.at1 for record in train], axis=0)
        report.baselines["pixel_ridge"] = _pixel_ridge(train, dataset.records, data_cfg.image_size)
        report.sequence = sequence_metrics(model, dataset.records, data_cfg.image_size, device, train)
        report.metadata = {
            "checkpoint": str(checkpoint_path.resolve()),
            "epoch": checkpoint.epoch,  # of the best-ranked one, for an averaged checkpoint
            # null unless averaged (training.average_top_k)
            "averaged_epochs": checkpoint.metrics.get("averaged_epochs"),
            "variant": config.model.variant,
            "split": split,
            "data_dir": str(Path(data_cfg.data_dir).resolve()),
            "evaluated": time.strftime("%Y-%m-%dT%H:%M:%S"),
        }
        write_report(report, output_dir)
    return report, output_dir


def _target_encoder(checkpoint: ModelCheckpoint, model: GuidanceModel,
                    path: Path) -> Tuple[Optional[LatentTarget], str]:
    """The latent loss's EMA target encoder saved with the checkpoint (``last.ckpt`` of older runs keeps it in its
    task state), or None and why not."""
    state = checkpoint.target_encoder or getattr(checkpoint, "task_state", {}).get("latent_target")
    if not can_imagine(model):
        return None, "a direct model has no world model"
    if not state:
        return None, ("this checkpoint holds no target encoder (saved before it was stored with model checkpoints, "
                      "or trained without the latent loss); evaluate its run's checkpoints/last.ckpt")
    target = LatentTarget(model.backbone, momentum=0.0)
    try:
        target.load_state_dict(state)
    except RuntimeError as error:
        raise CheckpointError(f"{path}: its target encoder does not fit the recorded model "
                              f"({' '.join(str(error).split())[:160]})") from None
    return target, ""


def _pixel_ridge(train: Sequence[TransitionRecord], evaluated: Sequence[TransitionRecord],
                 image_size: int) -> Optional[np.ndarray]:
    """The pixel ridge's at1 for ``evaluated`` (in order), fitted on ``train``; None without training pairs."""
    if not train:
        log.warning("pixel ridge baseline skipped: the checkpoint's split has no training pairs here")
        return None
    return PixelRidge(train, image_size).predict(evaluated)


def _write_predictions(report: EvaluationReport, output_dir: Path) -> Path:
    """``predictions.csv``: one row per pair, the label and each prediction per axis in mm and degrees (the
    composed columns are empty for direct models)."""
    path = output_dir / "predictions.csv"
    kinds = ("label", "guidance", "composed")
    columns = [f"{kind}_{name}_{unit}" for kind in kinds for name, unit in zip(AXIS_NAMES, AXIS_UNITS)]
    with atomic_open(path, "w") as stream:
        writer = csv.writer(stream, lineterminator="\n")
        writer.writerow(["patient_id", "folder", "entry_index", "image_t1", "image_t2", *columns])
        for row in range(len(report.patient_ids)):
            values = [report.labels[row], report.guidance[row],
                      report.composed[row] if report.composed is not None else [None] * 6]
            writer.writerow([
                report.patient_ids[row], report.folders[row], report.indices[row], *report.image_paths[row],
                *("" if value is None else f"{value:.4f}" for vector in values for value in vector),
            ])
    return path


def _number(value: Optional[float]) -> str:
    return "n/a" if value is None or not math.isfinite(value) else f"{value:.4g}"


def _ratio_text(value: Optional[float]) -> str:
    return "n/a" if value is None or not math.isfinite(value) else f"{value:.2f}x"


def _axis_cells(task: Dict[str, Any], axis: int) -> str:
    accuracy = task[f"direction_accuracy_{AXIS_NAMES[axis]}"]
    accuracy_text = "n/a" if accuracy is None else f"{100 * accuracy:.1f}%"
    return f"{_number(task[axis_key('mae', axis)]):>11}{_number(task[axis_key('rmse', axis)]):>9}{accuracy_text:>9}"
