"""Where the probe goes: the poses of a patient's frames and which frames form the (t1, t2) pairs.

Two modes, because they answer different questions:

* ``"random"``: independent pairs. ``at1`` is uniform in the pose box shrunk by the move range, the move is uniform
  in that range and independent of ``at1``, and ``at2 = at1 + move`` stays inside the limits without clipping. The
  move therefore says nothing about ``at1`` (no leakage): a model must read the pose from the image.
* ``"sonographer"``: one mean-reverting walk around the target view, like a real scan drifting back to the view,
  with pairs ``(k, k + gap)`` that share frames as the real exports do. The move correlates negatively with
  ``at1`` (it points back toward the view), so the move leaks part of the pose.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Tuple

import numpy as np

from ..errors import ConfigError

TRAJECTORIES = ("random", "sonographer")
POSE_LIMITS = np.array([15.0, 15.0, 15.0, 20.0, 20.0, 20.0])  # |at| stays within these (mm, degrees)
MOVE_LIMITS = np.array([4.0, 4.0, 4.0, 5.0, 5.0, 5.0])  # |move| of a random pair stays within these (mm, degrees)
FRAME_GAPS = (1, 2, 3)  # frames between t1 and t2 of a sonographer pair
DEFAULT_FRAMES_PER_PATIENT = 500
LABEL_DECIMALS = 3
WALK_MEMORY = 0.85  # per-frame autocorrelation of the sonographer walk: ~7 frames to forget
WALK_SPREAD = 0.6  # the walk's stationary std before the tanh: most poses within 0.8 of the limits


@dataclass(frozen=True)
class Trajectory:
    """``poses [F, 6]`` (mm, degrees, rounded to the label decimals) and ``pairs [P, 2]`` frame indices (t1, t2)."""

    poses: np.ndarray
    pairs: np.ndarray


def resolve_counts(mode: str, pairs: Optional[int], frames: Optional[int]) -> Tuple[int, int]:
    """``(frames, pairs)`` per patient from whichever of the two the caller gave (neither: 500 frames).

    Random pairs use two frames each; a sonographer walk of F frames offers ``len(FRAME_GAPS) * (F - 3)`` pairs.
    """
    if mode not in TRAJECTORIES:
        raise ConfigError(f"phantom trajectory must be one of {TRAJECTORIES}, got {mode!r}")
    if pairs is not None and pairs < 1:
        raise ConfigError(f"phantom needs >= 1 pair per patient, got {pairs}")
    if pairs is None and frames is None:
        frames = DEFAULT_FRAMES_PER_PATIENT
    if mode == "random":
        frames = 2 * pairs if frames is None else frames
        pairs = frames // 2 if pairs is None else pairs
        if frames != 2 * pairs or frames < 2:
            raise ConfigError(f"random phantom pairs use 2 frames each: {pairs} pairs need {2 * pairs} frames, "
                              f"got frames_per_patient={frames}")
        return frames, pairs
    longest = max(FRAME_GAPS)
    frames = pairs + longest if frames is None else frames
    available = len(FRAME_GAPS) * (frames - longest)
    pairs = available if pairs is None else pairs
    if not 1 <= pairs <= available:
        raise ConfigError(f"a sonographer walk of {frames} frames offers 1 to {max(available, 0)} pairs, "
                          f"got {pairs}")
    return frames, pairs


def plan_trajectory(mode: str, rng: np.random.Generator, frames: int, pairs: int) -> Trajectory:
    """The poses and pairs of one patient, from counts that :func:`resolve_counts` returned."""
    return random_pairs(rng, pairs) if mode == "random" else sonographer_walk(rng, frames, pairs)


def random_pairs(rng: np.random.Generator, num_pairs: int) -> Trajectory:
    """Independent pairs: frame ``2i`` is t1 and ``2i + 1`` is t2 of pair ``i``; the move is independent of at1."""
    at1 = _labels(rng.uniform(-1.0, 1.0, (num_pairs, 6)) * (POSE_LIMITS - MOVE_LIMITS))
    move = _labels(rng.uniform(-1.0, 1.0, (num_pairs, 6)) * MOVE_LIMITS)
    poses = np.stack([at1, _labels(at1 + move)], 1).reshape(-1, 6)  # [P, 2, 6] -> [2P, 6]
    return Trajectory(poses, np.arange(2 * num_pairs).reshape(num_pairs, 2))


def sonographer_walk(rng: np.random.Generator, num_frames: int, num_pairs: int) -> Trajectory:
    """A mean-reverting walk bounded by ``POSE_LIMITS``, and pairs ``(k, k + gap)`` spread evenly along it."""
    state = rng.normal(0.0, WALK_SPREAD, 6)
    walk = np.empty((num_frames, 6))
    for frame in range(num_frames):
        walk[frame] = state
        state = WALK_MEMORY * state + np.sqrt(1.0 - WALK_MEMORY**2) * rng.normal(0.0, WALK_SPREAD, 6)
    index = np.arange(num_pairs)
    starts = index * (num_frames - max(FRAME_GAPS)) // num_pairs
    gaps = np.asarray(FRAME_GAPS)[index % len(FRAME_GAPS)]
    return Trajectory(_labels(POSE_LIMITS * np.tanh(walk)), np.stack([starts, starts + gaps], 1))


def _labels(poses: np.ndarray) -> np.ndarray:
    """Rounded as the exports write them, so a frame is rendered at exactly the pose its label says."""
    return np.round(poses, LABEL_DECIMALS)
