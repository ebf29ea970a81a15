"""``dataset_statistics.png``: who is in which split, how many pairs each patient gave, and a few image pairs."""
from __future__ import annotations

import os
import textwrap
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from matplotlib.axes import Axes
from matplotlib.patches import Patch

from ..names import SPLIT_NAMES
from .common import DEFAULT_DPI, figure, no_data, save_figure, text_panel


SPLIT_COLORS = {"train": "tab:blue", "val": "tab:orange", "test": "tab:green"}
UNASSIGNED_COLOR = "tab:gray"
OK_COLOR, ALERT_COLOR = "darkgreen", "tab:red"
MAX_PREVIEWS = 6


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
    text_panel(ax, "Cross-patient check", lines, ALERT_COLOR if overlap else OK_COLOR, fontsize=10, weight="bold")
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
        no_data(ax)
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
        no_data(ax, "no sample previews")
        return
    for ax, (patient, split_name, image_t1, image_t2) in zip(subfig.subplots(1, len(pairs), squeeze=False)[0], pairs):
        gap = np.full((image_t1.shape[0], max(2, image_t1.shape[1] // 50)), 255, dtype=np.uint8)
        ax.imshow(np.hstack([image_t1, gap, image_t2]), cmap="gray", vmin=0, vmax=255)  # [H, 2W + gap]
        ax.set_title(f"{patient} ({split_name})\nt1 | t2", fontsize=8, color=_split_color(split_name))
        ax.axis("off")


def _split_color(split_name: str | None) -> str:
    return SPLIT_COLORS.get(split_name, UNASSIGNED_COLOR)
