"""What an evaluation found: the predictions, their metrics in physical units (``metrics.json``) and the table the
terminal shows.

Three predictions of at1 are scored for every pair:

* ``guidance``: the image alone (``head(backbone(image_t1))``), what a sonographer asking for guidance gets, and
  the headline; for every variant;
* ``composed``: the world model's imagined t2 pose with the *real* t1 -> t2 move undone. It uses the future move,
  which a sonographer asking for guidance does not have, so it is reported beside the guidance, never instead;
  the ``"direct"`` variant has none;
* ``train_mean``: the training pairs' mean at1, the baseline any guidance must beat by a margin (``evaluate``
  alone has only the model's pose mean, which also counts at2);
* ``baselines``: every other baseline of :mod:`cardiac_dreamer.evaluation.baselines`, fitted on the checkpoint's
  training patients: ``pixel_ridge``, a ridge regression on pooled pixels (what a linear model makes of the same
  images), and ``move_only``, the move alone.

World models also get their diagnostics (:mod:`.diagnostics`): the move-transfer slopes, and how well the dreamed
features predict the target encoder's view of image t2.
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

from ..data.pooling import GRIDS
from ..geometry import AXIS_NAMES, AXIS_UNITS
from ..names import counted
from .metrics import DEFINITIONS, axis_key, ratio_text, summarize, summarize_by_patient
from .sequence import sequence_line

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
    f"{', '.join(f'{grid}x{grid}' for grid in GRIDS)} grids of cells, standardized) to at1, fitted on every distinct "
    "t1 frame of the checkpoint's training patients, its penalty per axis chosen by cross-validation over those "
    "patients only; null when it could not be fitted",
    "baselines.move_only": "a small MLP from each pair's t1->t2 move alone (no image) to at1, fitted on the "
    "checkpoint's training patients and selected on its validation patients: what the move says about the pose "
    "(the composed prediction uses the move, so it must beat this); null when it could not be fitted",
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
    "model's latent prediction from image t1 and the move, as world_model.latent_prediction says), "
    "dreamed_without_move (the same with a zero move: what the move adds is the gap between the two), copy (the "
    "backbone's t1 features unchanged: no change in the backbone's space), target_t1 (the target encoder's view of "
    "image t1: no change in the target's own space, the fair one); dreamed_vs_target_t1 below 1 means the world "
    "model predicts the next frame better than the current frame does; dreamed_vs_copy below 1 can come from the "
    "target's space alone; by_move_quartile: the same for the pairs in each quarter of move sizes (size: norm of "
    "the move in training move stds; translation and rotation ranges in mm and degrees); null with a note when the "
    "checkpoint holds no target encoder",
    "world_model.latent_prediction": "world models: the checkpoint's loss.latent_prediction: change (the target "
    "encoder's view of image t1 plus what the dreamer changed, read by the latent predictor) or features (the "
    "latent predictor's reading of the dreamed t2 features)",
    "world_model.at2_error": "world models: MAE per axis of at2 against the true at2, in mm and degrees: dreamed "
    "(the head on the dreamed features) and at1_plus_move (the image-only at1 composed with the true move, what "
    "arithmetic gives without a world model)",
}



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
            "per_patient": {patient: _patient_block(patient, by_patient, baselines_by_patient) for patient in patients},
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
        split = self.metadata.get("split")
        where = "" if split is None else " on all splits" if split == "all" else f" on the {split} split"
        lines = [
            f"evaluation{where}: {counted(metrics['samples'], 'sample')}, {counted(metrics['patients'], 'patient')}",
            f"{'':24}{'guidance (image alone)':>29}{'vs predicting':>15}{'vs pixel':>10}{'composed with':>16}",
            f"{'':24}{'MAE':>11}{'RMSE':>9}{'dir.acc':>9}{'the mean':>15}{'ridge':>10}{'the true move':>16}",
        ]
        for axis, (name, unit) in enumerate(zip(AXIS_NAMES, AXIS_UNITS)):
            key = axis_key("mae", axis)
            lines.append(f"{name + ' (' + unit + ')':24}{_axis_cells(guidance, axis)}"
                         f"{ratio_text(ratio[key]):>15}{ratio_text(ridge.get(key)):>10}"
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
        """The guidance against the training mean and the pixel ridge and, for world models, the dreamed latent error
        against "no change": the closing lines of every evaluation and of the demo."""
        metrics = self.metrics
        lines = [_ratio_line("predicting the training mean", metrics["guidance_vs_mean"])]
        if metrics["guidance_vs_pixel_ridge"]:
            lines.append(_ratio_line("the pixel ridge", metrics["guidance_vs_pixel_ridge"]))
        elif "pixel_ridge" in self.baselines:
            lines.append("guidance MAE vs the pixel ridge: n/a (the ridge could not be fitted on the training "
                         "patients)")
        else:  # evaluate() alone: the baselines are fitted by evaluate_checkpoint, which knows the training patients
            lines.append("guidance MAE vs the pixel ridge: n/a (not fitted here; evaluate_checkpoint fits the "
                         "baselines on the checkpoint's training patients)")
        if self.sequence is not None:
            lines.append(sequence_line(self.sequence))
        world = self.world_model
        if world is not None:
            latent = world["latent_error"]
            if latent is None:
                lines.append(f"world model latent error: n/a ({world['note']})")
            else:
                lines.append(f"world model latent error vs the target's view of t2: dreamed {latent['dreamed']:.4g}, "
                             f"the target's view of t1 {latent['target_t1']:.4g}, dreamed / target's t1 "
                             f"{ratio_text(latent['dreamed_vs_target_t1'])} ({_latent_verdict(latent)}; dreamed / "
                             f"the online backbone's t1 {ratio_text(latent['dreamed_vs_copy'])})")
        return lines


def _latent_verdict(latent: Dict[str, Any]) -> str:
    """What the ratio to the fair "nothing changes" says, read from its value: a fixed legend read as a claim."""
    ratio = latent["dreamed_vs_target_t1"]
    if ratio is None or not math.isfinite(ratio):
        return "no ratio: the target's view of t1 has no error to compare with"
    better = "better" if ratio < 1 else "no better"
    return f"{'below' if ratio < 1 else 'not below'} 1: the world model predicts the next frame {better} than the " \
           "current frame does"


def _ratio_line(baseline: str, ratio: Dict[str, Any]) -> str:
    return (f"guidance MAE vs {baseline}: {ratio_text(ratio['mean'])} averaged over the six axes, "
            f"{ratio_text(ratio['worst'])} on the worst axis ({ratio['worst_axis']})")


def _patient_block(patient: str, by_patient: Dict[str, Dict[str, Any]],
                   baselines_by_patient: Dict[str, Dict[str, Any]]) -> Dict[str, Any]:
    """One patient's figures, with the keys of the whole report's (``composed`` null for a direct model)."""
    guidance = by_patient["guidance"][patient]
    ridge = baselines_by_patient.get("pixel_ridge", {}).get(patient)
    return {
        "samples": guidance["samples"],
        "guidance": guidance,
        "composed": by_patient["composed"][patient] if "composed" in by_patient else None,
        "train_mean": by_patient["train_mean"][patient],
        "guidance_vs_mean": mean_ratio(guidance, by_patient["train_mean"][patient]),
        "baselines": {name: values[patient] for name, values in baselines_by_patient.items()},
        "guidance_vs_pixel_ridge": mean_ratio(guidance, ridge) if ridge else None,
    }


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


def _number(value: Optional[float]) -> str:
    return "n/a" if value is None or not math.isfinite(value) else f"{value:.4g}"


def _axis_cells(task: Dict[str, Any], axis: int) -> str:
    accuracy = task[f"direction_accuracy_{AXIS_NAMES[axis]}"]
    accuracy_text = "n/a" if accuracy is None else f"{100 * accuracy:.1f}%"
    return f"{_number(task[axis_key('mae', axis)]):>11}{_number(task[axis_key('rmse', axis)]):>9}{accuracy_text:>9}"
