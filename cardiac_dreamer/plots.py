"""Figures a run leaves behind: dataset statistics, training summary, evaluation and cross-validation plots.

Plain data in (lists, dicts, numpy arrays), one PNG out, the written path returned. The object API (``Figure`` +
Agg canvas) keeps pyplot's global state and a notebook user's backend untouched, and every file is written
atomically, so a crashed run never leaves a half-written PNG under the final name.
"""
from __future__ import annotations

import logging
import math
import os
import textwrap
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import matplotlib
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from matplotlib.text import Text
from matplotlib.ticker import LogFormatter, MaxNLocator

from .io.fileio import atomic_open
from .geometry import AXIS_NAMES, AXIS_UNITS, folded_poses
from .names import MONITOR, SPLIT_NAMES, VAL_MAE_NAMES

log = logging.getLogger(__name__)

DEFAULT_DPI = 100
SPLIT_COLORS = {"train": "tab:blue", "val": "tab:orange", "test": "tab:green"}
UNASSIGNED_COLOR = "tab:gray"
OK_COLOR, ALERT_COLOR = "darkgreen", "tab:red"
MAX_PREVIEWS = 6
MAX_TEXT_LINES = 28

# (key, label) in train/val pairs: a pair shares a colour, val is dashed.
MAIN_LOSSES = (("train_main_task_loss", "train"), (MONITOR, "val"))
TOTAL_LOSSES = (("train_total_loss", "train"), ("val_loss", "val"))
COMPONENT_LOSSES = (
    ("train_latent_loss", "latent (train)"),
    ("val_latent_loss", "latent (val)"),
    ("train_aux_t2_action_loss", "aux t2 action (train)"),
    ("val_aux_t2_action_loss", "aux t2 action (val)"),
    ("train_consistency_loss", "consistency (train)"),
    ("val_consistency_loss", "consistency (val)"),
)
FINAL_LOSSES = ("train_total_loss", "val_loss", "train_main_task_loss", MONITOR)


# ---------------------------------------------------------------------------------------------------- shared helpers
def figure(width: float, height: float, title: str = "") -> Figure:
    fig = Figure(figsize=(width, height), layout="constrained")
    if title:
        fig.suptitle(title)
    return fig


def save_figure(fig: Figure, path: str | os.PathLike, dpi: int) -> Path:
    """Render atomically: readers see the old plot or the new one, never half of one. Every text is drawn as
    written: a patient folder named ``p$\\bad$`` is a name, not a formula for matplotlib's math parser to fail on
    (tick labels made while drawing follow the rc setting, the texts already made are told one by one)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    FigureCanvasAgg(fig)  # attach an Agg canvas: no pyplot, no global backend switch
    with matplotlib.rc_context({"text.parse_math": False}), atomic_open(path, "wb") as handle:
        for text in fig.findobj(Text):
            text.set_parse_math(False)
        fig.savefig(handle, format="png", dpi=dpi)
    log.debug("wrote %s", path)
    return path


def _axis_panels(title: str) -> tuple[Figure, list[Axes]]:
    """One panel per pose axis (x, y, z on top; roll, pitch, yaw below)."""
    fig = figure(12, 7, title)
    return fig, list(fig.subplots(2, 3).ravel())


def _split_color(split_name: str | None) -> str:
    return SPLIT_COLORS.get(split_name, UNASSIGNED_COLOR)


def _no_data(ax: Axes, message: str = "no data") -> None:
    ax.text(0.5, 0.5, message, ha="center", va="center", color="gray", transform=ax.transAxes)


def _text_panel(ax: Axes, title: str, lines: Sequence[str], color: str = "black", **text_kwargs) -> None:
    if len(lines) > MAX_TEXT_LINES:
        lines = [*lines[: MAX_TEXT_LINES - 1], f"... and {len(lines) - MAX_TEXT_LINES + 1} more"]
    ax.axis("off")
    ax.set_title(title)
    ax.text(0.0, 1.0, "\n".join(lines), va="top", color=color, transform=ax.transAxes, **text_kwargs)


def _ranks(row: Mapping[str, object], first_ranked_epoch: int) -> bool:
    """Whether an epoch row could have given the best checkpoint (a row without an epoch is taken to)."""
    epoch = _finite(row.get("epoch"))
    return epoch is None or epoch >= first_ranked_epoch


def _finite(value) -> float | None:
    """``value`` as a float, or None when missing, None, NaN/inf or not a number (e.g. an empty CSV cell)."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _unit(key: str) -> str:
    """The physical unit a metric name ends with (``mae_x_mm`` -> ``mm``), or ``""``."""
    return next((unit for unit in dict.fromkeys(AXIS_UNITS) if key.endswith(f"_{unit}")), "")


def _format_metric(key: str, value) -> str:
    """Floats to 4 significant digits with the unit their name ends with; anything else (counts, text) as is."""
    if not isinstance(value, (float, np.floating)):
        return str(value)
    unit = _unit(key)
    return f"{value:.4g} {unit}" if unit else f"{value:.4g}"


# ---------------------------------------------------------------------------------------------- dataset statistics
def split_overlap(split: Mapping[str, Sequence[str]]) -> dict[str, list[str]]:
    """Patients listed in more than one split, each with the splits naming it; empty means no patient leakage."""
    membership: dict[str, list[str]] = {}
    for split_name, patients in split.items():
        for patient in dict.fromkeys(patients):  # a repeat inside one split is not a leak
            membership.setdefault(patient, []).append(split_name)
    return {patient: names for patient, names in membership.items() if len(names) > 1}


def plot_dataset_statistics(
    path: str | os.PathLike,
    split: Mapping[str, Sequence[str]],
    samples_per_patient: Mapping[str, int],
    sample_pairs: Sequence[tuple[str, str, np.ndarray, np.ndarray]] = (),
    composition_summary: str | None = None,
    *,
    dpi: int = DEFAULT_DPI,
) -> Path:
    """``dataset_statistics.png``: split ratios, samples per patient, image previews and the cross-patient check.

    ``sample_pairs`` holds ``(patient_id, split_name, image_t1, image_t2)`` with uint8 ``[H, W]`` images of one shape.
    """
    fig = figure(14, 10, "Dataset statistics")
    top, middle, bottom = fig.subfigures(3, 1)
    ratio_ax, check_ax = top.subplots(1, 2, width_ratios=[1.4, 1])
    _draw_split_ratios(ratio_ax, split, samples_per_patient)
    _draw_split_check(check_ax, split, composition_summary)
    _draw_samples_per_patient(middle.subplots(), split, samples_per_patient)
    _draw_previews(bottom, sample_pairs)
    return save_figure(fig, path, dpi)


def _draw_split_ratios(ax: Axes, split: Mapping[str, Sequence[str]], samples_per_patient: Mapping[str, int]) -> None:
    """100 % stacked bars: each split's share of the patients and of the samples, with counts."""
    rows = {
        "patients": [len(split.get(name, ())) for name in SPLIT_NAMES],
        "samples": [sum(samples_per_patient.get(p, 0) for p in split.get(name, ())) for name in SPLIT_NAMES],
    }
    for y, counts in enumerate(rows.values()):
        total, left = sum(counts) or 1, 0.0
        for name, count in zip(SPLIT_NAMES, counts):
            share = 100.0 * count / total
            ax.barh(y, share, left=left, color=SPLIT_COLORS[name])
            if count:
                ax.text(left + share / 2, y, f"{name}\n{count} ({share:.0f}%)", ha="center", va="center", fontsize=8)
            left += share
    ax.set_yticks(range(len(rows)), list(rows))
    ax.invert_yaxis()
    ax.set(xlim=(0, 100), xlabel="% of total", title="Train / val / test split")


def _draw_split_check(ax: Axes, split: Mapping[str, Sequence[str]], composition_summary: str | None) -> None:
    overlap = split_overlap(split)
    if overlap:
        lines = ["LEAK: patients in more than one split"]
        lines += [f"{patient}: {', '.join(names)}" for patient, names in sorted(overlap.items())]
    else:
        lines = ["OK: no patient in two splits"]
    _text_panel(ax, "Cross-patient check", lines, ALERT_COLOR if overlap else OK_COLOR, fontsize=10, weight="bold")
    if composition_summary:
        ax.text(0.0, 0.0, textwrap.fill(composition_summary, 70), va="bottom", fontsize=8, transform=ax.transAxes)


def _patient_order(split: Mapping[str, Sequence[str]], samples_per_patient: Mapping[str, int]) -> dict[str, str | None]:
    """Patients grouped by split (train, val, test, then any other), unassigned ones last -> their split."""
    order: dict[str, str | None] = {}
    for name in [*SPLIT_NAMES, *(n for n in split if n not in SPLIT_NAMES)]:
        for patient in split.get(name, ()):
            order.setdefault(patient, name)
    for patient in sorted(samples_per_patient):
        order.setdefault(patient, None)
    return order


def _draw_samples_per_patient(ax: Axes, split, samples_per_patient: Mapping[str, int]) -> None:
    order = _patient_order(split, samples_per_patient)
    if not order:
        _no_data(ax)
        return
    colors = [_split_color(name) for name in order.values()]
    bars = ax.bar(range(len(order)), [samples_per_patient.get(p, 0) for p in order], color=colors)
    if len(order) <= 30:
        ax.bar_label(bars, fontsize=7)
    ax.set_xticks(range(len(order)), list(order), rotation=90, fontsize=7)
    legend = [Patch(color=_split_color(n), label=n or "unassigned") for n in dict.fromkeys(order.values())]
    ax.legend(handles=legend, fontsize=8)
    ax.set(ylabel="transition pairs", title="Samples per patient")


def _draw_previews(subfig, sample_pairs: Sequence[tuple[str, str, np.ndarray, np.ndarray]]) -> None:
    pairs = list(sample_pairs)[:MAX_PREVIEWS]
    if not pairs:
        ax = subfig.subplots()
        ax.axis("off")
        _no_data(ax, "no sample previews")
        return
    for ax, (patient, split_name, image_t1, image_t2) in zip(subfig.subplots(1, len(pairs), squeeze=False)[0], pairs):
        gap = np.full((image_t1.shape[0], max(2, image_t1.shape[1] // 50)), 255, dtype=np.uint8)
        ax.imshow(np.hstack([image_t1, gap, image_t2]), cmap="gray", vmin=0, vmax=255)  # [H, 2W + gap]
        ax.set_title(f"{patient} ({split_name})\nt1 | t2", fontsize=8, color=_split_color(split_name))
        ax.axis("off")


# ------------------------------------------------------------------------------------------------ training summary
def plot_training_summary(
    path: str | os.PathLike,
    epoch_rows: Sequence[Mapping[str, object]],
    final_metrics: Mapping[str, object],
    *,
    first_ranked_epoch: int = 0,
    dpi: int = DEFAULT_DPI,
) -> Path:
    """``training_summary.png`` from the per-epoch log rows; missing, None, NaN or empty values are skipped. The
    best epoch is chosen from ``first_ranked_epoch`` on: pre-training epochs (``training.pretrain_epochs``) rank no
    checkpoint, so none of them is the best."""
    fig = figure(15, 8, "Training summary")
    total_ax, main_ax, lr_ax, component_ax, mae_ax, text_ax = fig.subplots(2, 3).ravel()
    _plot_series(total_ax, epoch_rows, TOTAL_LOSSES, "Total loss")
    _plot_series(main_ax, epoch_rows, MAIN_LOSSES, "Main task loss")
    ranked = [row for row in epoch_rows if _ranks(row, first_ranked_epoch)]
    _mark_best(main_ax, ranked)
    _plot_series(lr_ax, epoch_rows, (("learning_rate", "learning rate"),), "Learning rate", log_scale=True)
    _plot_series(component_ax, epoch_rows, COMPONENT_LOSSES, "Component losses")
    for ax in (total_ax, main_ax, lr_ax, component_ax):
        ax.legend(fontsize=8) if ax.get_legend_handles_labels()[0] else _no_data(ax)
    _draw_val_mae(mae_ax, epoch_rows)
    _text_panel(text_ax, "Final metrics", _summary_lines(epoch_rows, ranked, final_metrics), family="monospace",
                fontsize=8)
    return save_figure(fig, path, dpi)


def _series(rows: Sequence[Mapping[str, object]], key: str) -> tuple[np.ndarray, np.ndarray]:
    """(epochs, values) of ``key`` over the rows that hold a finite value; a row without an epoch uses its index."""
    points = [(_finite(row.get("epoch", i)), _finite(row.get(key))) for i, row in enumerate(rows)]
    points = [(i if epoch is None else epoch, value) for i, (epoch, value) in enumerate(points) if value is not None]
    return np.array([p[0] for p in points], dtype=float), np.array([p[1] for p in points], dtype=float)


def _plot_series(ax: Axes, rows, keys: Sequence[tuple[str, str]], title: str, log_scale: bool = False) -> None:
    for index, (key, label) in enumerate(keys):
        epochs, values = _series(rows, key)
        if log_scale:
            epochs, values = epochs[values > 0], values[values > 0]
        if values.size:  # markers keep a single epoch visible
            style = "--" if key.startswith("val") else "-"
            ax.plot(epochs, values, marker="o", markersize=3, linestyle=style, color=f"C{index // 2}", label=label)
    if log_scale and ax.lines:
        ax.set_yscale("log")
        # plain "4e-04" labels: the default ones are math markup, which save_figure draws as written
        ax.yaxis.set_major_formatter(LogFormatter())
        ax.yaxis.set_minor_formatter(LogFormatter(labelOnlyBase=False, minor_thresholds=(2, 0.5)))
    ax.set(title=title, xlabel="epoch")
    ax.xaxis.set_major_locator(_epoch_locator())


def _epoch_locator() -> MaxNLocator:
    """Whole epochs only, even for a run of one epoch (where the default falls back to fractions)."""
    return MaxNLocator(integer=True, min_n_ticks=1)


def _best_val(rows) -> tuple[float, float] | None:
    """(epoch, value) of the lowest finite ``val_main_task_loss``: the epoch the best checkpoint comes from."""
    epochs, values = _series(rows, MONITOR)
    if not values.size:
        return None
    best = int(np.argmin(values))
    return epochs[best], values[best]


def _mark_best(ax: Axes, rows) -> None:
    best = _best_val(rows)
    if best is not None:
        label = f"best val (epoch {best[0]:g})"
        ax.plot(*best, marker="*", markersize=12, color="tab:red", linestyle="none", label=label)


def _draw_val_mae(ax: Axes, rows) -> None:
    """Translation MAE on the left axis (mm), rotation MAE on a twin right axis (deg)."""
    twin = ax.twinx()
    for index, (name, unit, key) in enumerate(zip(AXIS_NAMES, AXIS_UNITS, VAL_MAE_NAMES)):
        epochs, values = _series(rows, key)
        if values.size:
            target, style = (ax, "-") if unit == "mm" else (twin, "--")
            label = f"{name} ({unit})"
            target.plot(epochs, values, marker="o", markersize=3, linestyle=style, color=f"C{index}", label=label)
    ax.set(title="Validation MAE per axis", xlabel="epoch", ylabel="MAE (mm)")
    ax.xaxis.set_major_locator(_epoch_locator())
    twin.set_ylabel("MAE (deg)")
    handles, labels = (a + b for a, b in zip(ax.get_legend_handles_labels(), twin.get_legend_handles_labels()))
    twin.legend(handles, labels, fontsize=8) if handles else _no_data(ax)  # on the twin, which is drawn on top


def _summary_lines(rows, ranked, final_metrics: Mapping[str, object]) -> list[str]:
    """One line per metric name: what the rows tell (the best of the ``ranked`` rows; the last epoch's losses and
    validation MAEs, named "final": the best epoch's may differ), then ``final_metrics``, whose value wins where it
    names a metric the rows already gave (the run's best loss, say)."""
    values: dict[str, object] = {}
    best = _best_val(ranked)
    if best is not None:
        values.update({"best epoch": f"{best[0]:g}", f"best_{MONITOR}": best[1]})
    for key in FINAL_LOSSES + VAL_MAE_NAMES:
        series = _series(rows, key)[1]
        if series.size:
            values[f"final {key}"] = series[-1]
    values.update(final_metrics)
    return [f"{key}: {_format_metric(key, value)}" for key, value in values.items()] or ["no metrics"]


# ------------------------------------------------------------------------------------------------- evaluation plots
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


# ------------------------------------------------------------------------------------------------ cross-validation
def plot_cv_summary(
    path: str | os.PathLike,
    results: Mapping[str, Sequence[Mapping[str, float]]],
    *,
    labels: Sequence[str] | None = None,
    stats: Mapping[str, Mapping[str, Mapping[str, float | None]]] | None = None,
    dpi: int = DEFAULT_DPI,
) -> Path:
    """One panel per numeric metric: each run's value and the mean ± sample std, variants side by side.

    ``results`` maps a variant name to its runs' metric dicts: ``{"dreamer": [{"mae_x_mm": 1.2, ...}, ...]}``;
    ``labels`` names the runs (default ``fold 1``, ``fold 2``...); ``stats`` gives each variant's ``{"mean": {metric:
    value}, "std": {...}}`` to show (default: over its runs; a baseline the seeds do not change counts each fold once).
    """
    fold_items = (item for folds in results.values() for fold in folds for item in fold.items())
    metrics = list(dict.fromkeys(key for key, value in fold_items if _finite(value) is not None))  # numeric, in order
    n_cols = min(3, max(1, len(metrics)))
    n_rows = max(1, math.ceil(len(metrics) / n_cols))
    fig = figure(4.5 * n_cols, 3.5 * n_rows, "Cross-validation summary")
    axes = fig.subplots(n_rows, n_cols, squeeze=False).ravel()
    for ax, metric in zip(axes, metrics):
        _draw_cv_metric(ax, metric, results, labels, stats or {})
    for ax in axes[len(metrics):]:
        ax.axis("off")
    if not metrics:
        _no_data(axes[0])
    return save_figure(fig, path, dpi)


def _draw_cv_metric(ax: Axes, metric: str, results: Mapping[str, Sequence[Mapping[str, float]]],
                    labels: Sequence[str] | None, stats: Mapping[str, Mapping[str, Mapping[str, object]]]) -> None:
    n_runs = max(len(runs) for runs in results.values())
    width = 0.8 / len(results)
    for index, (variant, runs) in enumerate(results.items()):
        values = np.array([_finite(run.get(metric)) for run in runs], dtype=float)  # None -> NaN: no bar
        finite = values[np.isfinite(values)]
        if not finite.size:
            continue
        mean, std = finite.mean(), finite.std(ddof=1) if finite.size > 1 else 0.0
        if variant in stats:
            mean, std = stats[variant]["mean"].get(metric, mean), stats[variant]["std"].get(metric, std)
        offset = (index - (len(results) - 1) / 2) * width
        color = f"C{index}"
        ax.bar(np.arange(len(values)) + offset, values, width, color=color, label=f"{variant}: {mean:.3f} ± {std:.3f}")
        ax.bar(n_runs + offset, mean, width, yerr=std, capsize=3, color=color, hatch="//", edgecolor="black")
    names = list(labels) if labels is not None else [f"fold {i + 1}" for i in range(n_runs)]
    ax.set_xticks(range(n_runs + 1), names + ["mean"], fontsize=8)
    unit = _unit(metric)
    ax.set(title=metric, ylabel=unit or "value")
    ax.margins(y=0.2)  # headroom for the legend
    ax.legend(fontsize=7) if ax.get_legend_handles_labels()[0] else _no_data(ax)
