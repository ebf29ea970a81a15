"""Evaluation figures: predicted against true pose, error histograms and per-patient errors, in mm and degrees."""
from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from ..geometry import AXIS_NAMES, AXIS_UNITS, folded_poses
from .common import DEFAULT_DPI, figure, save_figure


def _pose_arrays(labels, predictions) -> tuple[np.ndarray, np.ndarray]:
    labels, predictions = np.asarray(labels, dtype=float), np.asarray(predictions, dtype=float)
    if labels.ndim != 2 or labels.shape[1] != len(AXIS_NAMES) or labels.shape != predictions.shape or not len(labels):
        raise ValueError(f"labels {labels.shape} and predictions {predictions.shape} must both be [N>0, 6]")
    return labels, predictions


def _signed_errors(labels: np.ndarray, predictions: np.ndarray) -> np.ndarray:
    """``predictions - labels`` with angles folded into [-180, 180), as ``metrics.json`` scores them (a label of
    179 deg read as -179 is 2 deg off, not 358)."""
    return folded_poses(predictions - labels)


def plot_predicted_vs_true(
    path: str | os.PathLike, labels, predictions, title: str = "", *, dpi: int = DEFAULT_DPI
) -> Path:
    """Per axis, predicted against true value in physical units, with the identity line and the MAE; each
    predicted angle is drawn within 180 deg of its label (179 for a label of -179 at -181)."""
    labels, predictions = _pose_arrays(labels, predictions)  # [N, 6] each
    fig, axes = _axis_panels(title or "Predicted vs true")
    errors = _signed_errors(labels, predictions)
    predictions = labels + errors
    for ax, name, unit, true, pred, error in zip(axes, AXIS_NAMES, AXIS_UNITS, labels.T, predictions.T, errors.T):
        ax.scatter(true, pred, s=6, alpha=0.5)
        low, high = min(true.min(), pred.min()), max(true.max(), pred.max())
        ax.plot([low, high], [low, high], color="black", linewidth=1, linestyle="--")
        ax.set(
            title=f"{name}: MAE {np.abs(error).mean():.3g} {unit}",
            xlabel=f"true {name} ({unit})",
            ylabel=f"predicted {name} ({unit})",
        )
    return save_figure(fig, path, dpi)


def plot_error_histograms(path: str | os.PathLike, labels, predictions, *, dpi: int = DEFAULT_DPI) -> Path:
    """Per axis, the distribution of the signed error (predicted - true) in physical units."""
    labels, predictions = _pose_arrays(labels, predictions)
    fig, axes = _axis_panels("Signed error per axis")
    for ax, name, unit, errors in zip(axes, AXIS_NAMES, AXIS_UNITS, _signed_errors(labels, predictions).T):
        ax.hist(errors, bins=30)
        ax.axvline(0.0, color="black", linewidth=1)
        ax.set(
            title=f"{name}: mean {errors.mean():+.3g}, std {errors.std():.3g} {unit}",
            xlabel=f"predicted - true ({unit})",
            ylabel="pairs",
        )
    return save_figure(fig, path, dpi)


def plot_per_patient_mae(
    path: str | os.PathLike, per_patient_mae: Mapping[str, Sequence[float]], *, dpi: int = DEFAULT_DPI
) -> Path:
    """``per_patient_mae.png``: see :func:`per_patient_mae_figure`."""
    return save_figure(per_patient_mae_figure(per_patient_mae), path, dpi)


def per_patient_mae_figure(per_patient_mae: Mapping[str, Sequence[float]]) -> Figure:
    """Per axis, each patient's MAE in physical units with the mean over patients as a dashed line; one patient's
    six MAEs as two bar charts (mm, degrees) instead, where a mean line would only repeat each bar."""
    patients = list(per_patient_mae)
    maes = np.asarray([per_patient_mae[p] for p in patients], dtype=float)  # [P, 6]
    if maes.ndim != 2 or maes.shape[1] != len(AXIS_NAMES):
        raise ValueError(f"per_patient_mae must map at least one patient to 6 MAEs, got shape {maes.shape}")
    if len(patients) == 1:
        return _one_patient_mae(patients[0], maes[0])
    fig, axes = _axis_panels("MAE per patient")
    for index, (ax, name, unit, values) in enumerate(zip(axes, AXIS_NAMES, AXIS_UNITS, maes.T)):
        ax.bar(range(len(patients)), values, color=f"C{index}")
        ax.axhline(values.mean(), color="black", linestyle="--", linewidth=1, label=f"mean {values.mean():.3g} {unit}")
        ax.set_xticks(range(len(patients)), patients, rotation=90, fontsize=7)
        ax.set(title=f"{name} MAE", ylabel=f"MAE ({unit})")
        ax.legend(fontsize=8)
    return fig


def _one_patient_mae(patient: str, maes: np.ndarray) -> Figure:
    """Translation axes in mm on the left, rotation axes in degrees on the right, each bar labelled."""
    fig = figure(9, 4, f"MAE per axis of the only patient, {patient}")
    for ax, unit in zip(fig.subplots(1, 2), dict.fromkeys(AXIS_UNITS)):
        columns = [i for i, axis_unit in enumerate(AXIS_UNITS) if axis_unit == unit]
        bars = ax.bar([AXIS_NAMES[i] for i in columns], maes[columns], color=[f"C{i}" for i in columns])
        ax.bar_label(bars, fmt="%.3g", fontsize=8)
        ax.set(title=f"{'translation' if unit == 'mm' else 'rotation'} MAE", ylabel=f"MAE ({unit})")
        ax.margins(y=0.15)  # room for the labels
    return fig


def _axis_panels(title: str) -> tuple[Figure, list[Axes]]:
    """One panel per pose axis (x, y, z on top; roll, pitch, yaw below)."""
    fig = figure(12, 7, title)
    return fig, list(fig.subplots(2, 3).ravel())
