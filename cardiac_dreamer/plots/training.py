"""``training_summary.png``: the losses, the learning rate and the validation errors by epoch, and the run's figures."""
from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from matplotlib.axes import Axes
from matplotlib.ticker import LogFormatter, MaxNLocator

from ..geometry import AXIS_NAMES, AXIS_UNITS
from ..names import LOSS_NAMES, MONITOR, VAL_MAE_NAMES, logged_loss_names
from .common import DEFAULT_DPI, figure, finite_number, metric_unit, no_data, save_figure, text_panel


# (key, label) in train/val pairs: a pair shares a colour, val is dashed. The keys are the logged names of the
# objective's terms: the total (val_loss on val), the main task, then the components.
_TRAIN, _VAL = logged_loss_names("train", LOSS_NAMES), logged_loss_names("val", LOSS_NAMES)
TOTAL_LOSSES = ((_TRAIN[0], "train"), (_VAL[0], "val"))
MAIN_LOSSES = ((_TRAIN[1], "train"), (_VAL[1], "val"))
COMPONENT_LOSSES = tuple(
    (logged[i], f"{LOSS_NAMES[i].removesuffix('_loss').replace('_', ' ')} ({split})")
    for i in range(2, len(LOSS_NAMES)) for split, logged in (("train", _TRAIN), ("val", _VAL))
)
FINAL_LOSSES = (_TRAIN[0], _VAL[0], _TRAIN[1], _VAL[1])


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
        ax.legend(fontsize=8) if ax.get_legend_handles_labels()[0] else no_data(ax)
    _draw_val_mae(mae_ax, epoch_rows)
    text_panel(text_ax, "Final metrics", _summary_lines(epoch_rows, ranked, final_metrics), family="monospace",
                fontsize=8)
    return save_figure(fig, path, dpi)


def _series(rows: Sequence[Mapping[str, object]], key: str) -> tuple[np.ndarray, np.ndarray]:
    """(epochs, values) of ``key`` over the rows that hold a finite value; a row without an epoch uses its index."""
    points = [(finite_number(row.get("epoch", i)), finite_number(row.get(key))) for i, row in enumerate(rows)]
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
    twin.legend(handles, labels, fontsize=8) if handles else no_data(ax)  # on the twin, which is drawn on top


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


def _ranks(row: Mapping[str, object], first_ranked_epoch: int) -> bool:
    """Whether an epoch row could have given the best checkpoint (a row without an epoch is taken to)."""
    epoch = finite_number(row.get("epoch"))
    return epoch is None or epoch >= first_ranked_epoch


def _format_metric(key: str, value) -> str:
    """Floats to 4 significant digits with the unit their name ends with; anything else (counts, text) as is."""
    if not isinstance(value, (float, np.floating)):
        return str(value)
    unit = metric_unit(key)
    return f"{value:.4g} {unit}" if unit else f"{value:.4g}"
