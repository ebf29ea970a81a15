"""Where closed-loop episodes start: inside the poses the model was trained on, unless asked otherwise.

A model is only answerable for poses like its training poses: beyond their range it saturates (a model trained on
+-11 mm reads a true 20 mm as about 10), so starts drawn beyond it measure extrapolation, not guidance. The
checkpoint keeps the training poses' mean and standard deviation per axis, not their extremes; the training range
is taken as ``mean +- sqrt(3) std`` per axis, exactly the range of a uniform distribution with those moments (the
phantom's poses are uniform) and well inside the range of a peaked one.

The simulator draws starts from a box centred on the view, ``[-r, r]`` mm on x, y, z and degrees on the angles, so
the default box is the largest such box inside the training range on every axis. Wider boxes (``--start_range``)
put some starts outside; those episodes are reported apart (:func:`inside`).
"""
from __future__ import annotations

import math
from typing import Tuple

import numpy as np

from ...errors import ConfigError
from ..session import ARRIVAL_DEG, ARRIVAL_MM

UNIFORM_HALF_WIDTH = math.sqrt(3.0)  # half-width / std of a uniform distribution
RANGE_SOURCE = "the checkpoint's pose statistics: mean +- sqrt(3) std per axis (the range of a uniform distribution " \
               "with the training poses' mean and std)"


def training_range(pose_mean: np.ndarray, pose_std: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """``(low [6], high [6])``: the training poses' range per axis, mm and degrees."""
    pose_mean, pose_std = np.asarray(pose_mean, dtype=np.float64), np.asarray(pose_std, dtype=np.float64)
    return pose_mean - UNIFORM_HALF_WIDTH * pose_std, pose_mean + UNIFORM_HALF_WIDTH * pose_std


def start_box(low: np.ndarray, high: np.ndarray) -> Tuple[float, float]:
    """``(mm, degrees)``: the largest box ``[-r, r]`` per kind of axis inside ``[low, high]`` on every axis;
    ConfigError when it leaves no start outside the arrival view."""
    room = np.minimum(-np.asarray(low, dtype=np.float64), np.asarray(high, dtype=np.float64)).clip(min=0.0)  # [6]
    box_mm, box_deg = float(room[:3].min()), float(room[3:].min())
    if box_mm <= ARRIVAL_MM and box_deg <= ARRIVAL_DEG:
        raise ConfigError(f"the training poses' range ({_shown(low, high)}) holds no box around the view wider than "
                          f"the {ARRIVAL_MM:g} mm / {ARRIVAL_DEG:g} deg arrival view to start from; pass "
                          "--start_range (e.g. 15mm,15deg)")
    return box_mm, box_deg


def inside(poses: np.ndarray, low: np.ndarray, high: np.ndarray) -> np.ndarray:
    """``[..., 6] -> [...]``: the pose lies within ``[low, high]`` on every axis."""
    poses = np.asarray(poses, dtype=np.float64)
    return ((poses >= low) & (poses <= high)).all(-1)


def _shown(low: np.ndarray, high: np.ndarray) -> str:
    return ", ".join(f"{a:.1f}..{b:.1f}" for a, b in zip(low, high)) + " mm, mm, mm, deg, deg, deg"
