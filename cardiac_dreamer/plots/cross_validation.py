"""``cv_summary.png``: each metric per fold and variant, with the baselines beside them."""
from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from matplotlib.axes import Axes

from .common import DEFAULT_DPI, figure, finite_number, metric_unit, no_data, save_figure


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
    # the numeric metrics, in order
    metrics = list(dict.fromkeys(key for key, value in fold_items if finite_number(value) is not None))
    n_cols = min(3, max(1, len(metrics)))
    n_rows = max(1, math.ceil(len(metrics) / n_cols))
    fig = figure(4.5 * n_cols, 3.5 * n_rows, "Cross-validation summary")
    axes = fig.subplots(n_rows, n_cols, squeeze=False).ravel()
    for ax, metric in zip(axes, metrics):
        _draw_cv_metric(ax, metric, results, labels, stats or {})
    for ax in axes[len(metrics):]:
        ax.axis("off")
    if not metrics:
        no_data(axes[0])
    return save_figure(fig, path, dpi)


def _draw_cv_metric(ax: Axes, metric: str, results: Mapping[str, Sequence[Mapping[str, float]]],
                    labels: Sequence[str] | None, stats: Mapping[str, Mapping[str, Mapping[str, object]]]) -> None:
    n_runs = max(len(runs) for runs in results.values())
    width = 0.8 / len(results)
    for index, (variant, runs) in enumerate(results.items()):
        values = np.array([finite_number(run.get(metric)) for run in runs], dtype=float)  # None -> NaN: no bar
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
    unit = metric_unit(metric)
    ax.set(title=metric, ylabel=unit or "value")
    ax.margins(y=0.2)  # headroom for the legend
    ax.legend(fontsize=7) if ax.get_legend_handles_labels()[0] else no_data(ax)
