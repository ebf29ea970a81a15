"""Pose-error metrics in physical units (mm and degrees), on plain arrays, hand-checkable.

Inputs are ``[N, 6]`` arrays ``[x, y, z, roll, pitch, yaw]`` of true and predicted poses at t1 (the probe pose
relative to the target plane), already de-standardized. Angles are compared on the circle, so 179 and -179 degrees
are 2 degrees apart. Every figure is a mean over samples (or over the samples that count, for direction accuracy),
so the figures of disjoint groups weighted by their counts give back the figures of the whole set (not so for the
median, nor for RMSE, whose squares are what add up).
"""
from __future__ import annotations

import math
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch

from ..geometry import AXIS_NAMES, AXIS_UNITS, folded_poses, pose_error, pose_to_matrix

Metrics = Dict[str, Optional[float]]  # None: no sample to measure on

DEFINITIONS = {
    "target": "at1, the probe pose at t1 relative to the target plane; the guidance (move to the target) is -at1 "
    "in additive mode, so its errors are the same",
    "mae_<axis>, rmse_<axis>, median_ae_<axis>": "mean, root mean square and median of |predicted - true| per "
    "axis, in mm (x, y, z) or degrees (roll, pitch, yaw); angles compared on the circle",
    "bias_<axis>": "mean of predicted - true per axis (mm or degrees, on the circle): the part of the error one "
    "constant offset explains. Per patient, a bias near the MAE means the model reads that patient's whole sweep "
    "shifted (its anatomy differs from the training patients'), which neither averaging frames nor more epochs "
    "removes",
    "translation_error_mm": "mean Euclidean distance between predicted and true (x, y, z)",
    "rotation_error_deg": "mean angle of the relative rotation R_true^T R_pred, arccos((trace - 1) / 2), with "
    "R = Rz(yaw) Ry(pitch) Rx(roll)",
    "direction_accuracy_<axis>": "fraction of samples whose predicted at1 has the sign of the true at1 on that "
    "axis (equivalently the move to the target points the right way); samples with a true value of exactly 0 have "
    "no direction and are skipped, direction_samples_<axis> counts the rest; a predicted 0 counts as wrong; null "
    "when no sample counts",
    "main_task_loss": "mean SmoothL1 of the at1 errors divided by the training std of each axis; for guidance this "
    "is the training objective's main term",
}


def axis_key(prefix: str, axis: int) -> str:
    """``mae`` and 0 -> ``"mae_x_mm"``; the unit is part of every physical metric's name."""
    return f"{prefix}_{AXIS_NAMES[axis]}_{AXIS_UNITS[axis]}"


def pose_errors(labels: np.ndarray, predictions: np.ndarray) -> np.ndarray:
    """Signed errors ``predictions - labels`` ``[N, 6]``, angles folded into [-180, 180)."""
    return pose_error(torch.from_numpy(_as_poses(labels)), torch.from_numpy(_as_poses(predictions))).numpy()


def translation_errors(labels: np.ndarray, predictions: np.ndarray) -> np.ndarray:
    """Euclidean distance of the (x, y, z) parts, mm, ``[N]``."""
    return np.linalg.norm(_as_poses(predictions)[:, :3] - _as_poses(labels)[:, :3], axis=1)


def rotation_errors(labels: np.ndarray, predictions: np.ndarray) -> np.ndarray:
    """Angle of the rotation taking the true orientation to the predicted one, degrees in [0, 180], ``[N]``.

    ``arccos((trace(R) - 1) / 2)`` of ``R = R_true^T R_pred``, computed as ``atan2(sin, cos)`` with the sine from
    the antisymmetric part, which stays accurate for the small angles that matter here (arccos does not near 1).
    """
    def rotation(poses: np.ndarray) -> torch.Tensor:  # [N, 6] -> [N, 3, 3]
        angles_only = torch.from_numpy(poses).clone()
        angles_only[:, :3] = 0.0
        return pose_to_matrix(angles_only)[:, :3, :3]

    relative = rotation(_as_poses(labels)).transpose(-1, -2) @ rotation(_as_poses(predictions))
    cos = (relative.diagonal(dim1=-2, dim2=-1).sum(-1) - 1.0) / 2.0
    antisymmetric = relative - relative.transpose(-1, -2)  # 2 sin(angle) [axis]_x
    sin = antisymmetric.square().sum((-2, -1)).div(8.0).sqrt()
    return torch.rad2deg(torch.atan2(sin, cos)).numpy()


def direction_agreement(labels: np.ndarray, predictions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(agrees, counts)``, boolean ``[N, 6]`` each: the signs of predicted and true at1 agree, and the true value
    has a direction at all (is not exactly 0). Angles are folded into [-180, 180) first."""
    signs = [np.sign(folded_poses(_as_poses(poses))) for poses in (labels, predictions)]
    counts = signs[0] != 0
    return (signs[0] == signs[1]) & counts, counts


def summarize(labels: np.ndarray, predictions: np.ndarray, losses: Optional[np.ndarray] = None) -> Metrics:
    """Every metric of :data:`DEFINITIONS` for one set of samples; ``losses`` ``[N]`` are per-sample SmoothL1
    values (mean over the six axes), reported as ``main_task_loss`` when given."""
    signed = pose_errors(labels, predictions)  # [N, 6]
    errors = np.abs(signed)
    agrees, counts = direction_agreement(labels, predictions)
    metrics: Metrics = {"samples": int(errors.shape[0])}
    for prefix, values in (
        ("mae", errors.mean(0)),
        ("rmse", np.sqrt(np.square(errors).mean(0))),
        ("median_ae", np.median(errors, 0)),
        ("bias", signed.mean(0)),
    ):
        metrics.update({axis_key(prefix, axis): float(value) for axis, value in enumerate(values)})
    for axis, name in enumerate(AXIS_NAMES):
        counted = int(counts[:, axis].sum())
        metrics[f"direction_accuracy_{name}"] = float(agrees[:, axis].sum() / counted) if counted else None
        metrics[f"direction_samples_{name}"] = counted
    metrics["translation_error_mm"] = float(translation_errors(labels, predictions).mean())
    metrics["rotation_error_deg"] = float(rotation_errors(labels, predictions).mean())
    if losses is not None:
        metrics["main_task_loss"] = float(np.asarray(losses, dtype=np.float64).mean())
    return metrics


def summarize_by_patient(
    labels: np.ndarray,
    predictions: np.ndarray,
    patient_ids: Sequence[str],
    losses: Optional[np.ndarray] = None,
) -> Dict[str, Metrics]:
    """:func:`summarize` of each patient's samples, patients in sorted order."""
    patient_ids = np.asarray(patient_ids)
    by_patient = {}
    for patient in sorted(set(patient_ids.tolist())):
        rows = patient_ids == patient
        by_patient[patient] = summarize(
            _as_poses(labels)[rows], _as_poses(predictions)[rows], None if losses is None else np.asarray(losses)[rows]
        )
    return by_patient


def mae_per_axis(metrics: Metrics) -> List[float]:
    """The six per-axis MAEs of a :func:`summarize` result, in axis order."""
    return [metrics[axis_key("mae", axis)] for axis in range(len(AXIS_NAMES))]


def _as_poses(values) -> np.ndarray:
    """Any array-like of poses -> float64 ``[N, 6]`` (a copy, so callers' arrays are never changed)."""
    if isinstance(values, torch.Tensor):
        values = values.detach().cpu().numpy()
    poses = np.atleast_2d(np.array(values, dtype=np.float64))
    if poses.ndim != 2 or poses.shape[1] != 6:
        raise ValueError(f"expected poses of shape [N, 6] (x, y, z, roll, pitch, yaw), got {poses.shape}")
    return poses


def ratio_text(value: Optional[float]) -> str:
    """``0.82x``; a huge ratio (a baseline near zero error, as on near-constant labels) in three digits."""
    if value is None or not math.isfinite(value):
        return "n/a"
    return f"{value:.2f}x" if abs(value) < 1000 else f"{value:.3g}x"
