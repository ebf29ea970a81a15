"""Where closed-loop episodes start: inside the poses the model was trained on, unless asked otherwise.

A model is only answerable for poses like its training poses: beyond their range it saturates (a model trained on
+-11 mm reads a true 20 mm as about 10), so starts drawn beyond it measure extrapolation, not guidance. The
checkpoint keeps the training poses' mean and standard deviation per axis, not their extremes; the training range
is taken as ``mean +- sqrt(3) std`` per axis, exactly the range of a uniform distribution with those moments and
well inside the range of a peaked one.

By default starts lie within that range on each axis, however uneven it is (a sweep's roll runs from about -15 to 45
degrees, its x over +-7 mm): a box centred on the view would have to fit the narrowest axis, and on phantom v4 it
kept every start within 5 mm / 6 degrees, where staying put is nearly as good as guidance. Where the patients were
written as sweeps (phantom v4), starts are poses of fresh sweeps, because the range's corners are not training
poses: a sweep turns roll and yaw together, and a model trained on sweeps reads yaw through that coupling (with
roll at the view, the demo model reads a yaw of -30 degrees as -1: ``benchmarks/axis_response.py``). Elsewhere
(poses drawn independently per axis) they are uniform in the range. A box centred on the view (``--start_range``)
may reach beyond the range; those episodes are reported apart (:func:`inside`).
"""
from __future__ import annotations

import math
from typing import Iterable, Tuple

import numpy as np

from ...errors import ConfigError
from ..settings import box_inside_view, box_text

UNIFORM_HALF_WIDTH = math.sqrt(3.0)  # half-width / std of a uniform distribution
RANGE_SOURCE = "the checkpoint's pose statistics: mean +- sqrt(3) std per axis (the range of a uniform distribution " \
               "with the training poses' mean and std)"


def training_range(pose_mean: np.ndarray, pose_std: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """``(low [6], high [6])``: the training poses' range per axis, mm and degrees."""
    pose_mean, pose_std = np.asarray(pose_mean, dtype=np.float64), np.asarray(pose_std, dtype=np.float64)
    return pose_mean - UNIFORM_HALF_WIDTH * pose_std, pose_mean + UNIFORM_HALF_WIDTH * pose_std


def start_box(low: np.ndarray, high: np.ndarray) -> Tuple[Tuple[float, ...], Tuple[float, ...]]:
    """``(low, high)``: the default start box, the training range itself; ConfigError when it leaves no start
    outside the arrival view."""
    if box_inside_view(low, high):
        raise ConfigError(f"the training poses' range ({box_text(low, high)}) lies inside the arrival view: no "
                          "start to navigate from; pass --start_range (e.g. 15mm,15deg)")
    return tuple(float(value) for value in low), tuple(float(value) for value in high)


def start_kind(trajectories: Iterable[str]) -> str:
    """``"sweep"`` when every patient was written as sweeps, else ``"box"`` (see the module docstring)."""
    return "sweep" if all(trajectory == "sweep" for trajectory in trajectories) else "box"


def inside(poses: np.ndarray, low: np.ndarray, high: np.ndarray) -> np.ndarray:
    """``[..., 6] -> [...]``: the pose lies within ``[low, high]`` on every axis."""
    poses = np.asarray(poses, dtype=np.float64)
    return ((poses >= low) & (poses <= high)).all(-1)
