"""What every figure shares: a figure and its atomic save, text and empty panels, and how a metric's value and
unit are read."""
from __future__ import annotations

import logging
import math
import os
from collections.abc import Sequence
from pathlib import Path

import matplotlib
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.text import Text

from ..io.fileio import atomic_open
from ..geometry import AXIS_UNITS


log = logging.getLogger(__name__)
DEFAULT_DPI = 100
MAX_TEXT_LINES = 28


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


def no_data(ax: Axes, message: str = "no data") -> None:
    ax.text(0.5, 0.5, message, ha="center", va="center", color="gray", transform=ax.transAxes)


def text_panel(ax: Axes, title: str, lines: Sequence[str], color: str = "black", **text_kwargs) -> None:
    if len(lines) > MAX_TEXT_LINES:
        lines = [*lines[: MAX_TEXT_LINES - 1], f"... and {len(lines) - MAX_TEXT_LINES + 1} more"]
    ax.axis("off")
    ax.set_title(title)
    ax.text(0.0, 1.0, "\n".join(lines), va="top", color=color, transform=ax.transAxes, **text_kwargs)


def finite_number(value) -> float | None:
    """``value`` as a float, or None when missing, None, NaN/inf or not a number (e.g. an empty CSV cell)."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def metric_unit(key: str) -> str:
    """The physical unit a metric name ends with (``mae_x_mm`` -> ``mm``), or ``""``."""
    return next((unit for unit in dict.fromkeys(AXIS_UNITS) if key.endswith(f"_{unit}")), "")
