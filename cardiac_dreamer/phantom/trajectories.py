"""Where the probe goes: the poses of a patient's frames and which frames form the (t1, t2) pairs.

Three modes, because they answer different questions:

* ``"sweep"`` (phantom v4's default): what a real export holds. Each sweep of ``SWEEP_FRAMES`` frames starts far
  from the view (``SWEEP_START``: roll ~50, yaw ~-37 degrees, a few mm off) and converges to it, wandering slowly
  and trembling frame to frame; pairs ``(t1, t1 + gap)`` with gaps of 1-4 frames in the real export's shares, each
  pair its own two files. A patient with more pairs than one sweep offers is scanned in several sweeps.

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

from ..config import check_choice
from ..errors import ConfigError

TRAJECTORIES = ("sweep", "random", "sonographer")
POSE_LIMITS = np.array([15.0, 15.0, 15.0, 20.0, 20.0, 20.0])  # |at| stays within these (mm, degrees)
MOVE_LIMITS = np.array([4.0, 4.0, 4.0, 5.0, 5.0, 5.0])  # |move| of a random pair stays within these (mm, degrees)
FRAME_GAPS = (1, 2, 3)  # frames between t1 and t2 of a sonographer pair
MAX_FRAMES_PER_PATIENT = 1_000_000  # a million PNGs per patient; the poses planned for them fit in ~50 MB
DEFAULT_FRAMES_PER_PATIENT = 500
LABEL_DECIMALS = 3
WALK_MEMORY = 0.85  # per-frame autocorrelation of the sonographer walk: ~7 frames to forget
WALK_SPREAD = 0.6  # the walk's stationary std before the tanh: most poses within 0.8 of the limits


# Frame numbers left out between two sweeps, or two independent pairs: more than a chain steps over (data.chains), so
# the sequential estimator never chains the end of one to the start of the next, a jump no probe makes
FRAME_BREAK = 16
SWEEP_FRAMES = 584  # frames of one sweep: the real export's 580 pairs, gaps up to 4
SWEEP_STRIDE = SWEEP_FRAMES + FRAME_BREAK
RANDOM_PAIR_STRIDE = 2 + FRAME_BREAK
SWEEP_GAPS = {1: 0.37, 2: 0.45, 3: 0.16, 4: 0.02}  # frames between t1 and t2, and their shares in a real export
SWEEP_CONVERGED = 2.0 / 3.0  # share of the sweep after which the probe hovers at the view
# per axis (x, y, z mm; roll, pitch, yaw degrees): where the sweep ends, how far from there it starts, how far it
# wanders on the way (scaled down as it converges) and the frame-to-frame tremor (std of an AR(1) process)
SWEEP_END = np.array([0.0, 0.0, 0.7, -1.0, -1.0, 1.9])
SWEEP_START = np.array([-1.0, -2.0, 1.0, 51.0, -9.0, -37.0])
SWEEP_WANDER = np.array([8.7, 12.0, 6.2, 17.0, 11.5, 12.0])  # x: the real at1 std of 4.1 mm
SWEEP_HOVER = np.array([0.5, 0.5, 0.3, 0.45, 0.5, 1.1])  # the wander left once converged
SWEEP_TREMOR = np.array([0.45, 0.6, 0.23, 0.38, 0.21, 0.28])
TREMOR_MEMORY = 0.5
WANDER_PERIODS = (150.0, 500.0)  # frames: the slow drift of a sonographer's hand


@dataclass(frozen=True)
class Trajectory:
    """``poses [F, 6]`` (mm, degrees, rounded to the label decimals) and ``pairs [P, 2]`` frame indices (t1, t2).

    ``files`` says how frames become files: ``"frame"`` (one file per frame, shared by the pairs that use it) or
    ``"pair"`` (each pair its own two files, as a real export writes them).
    """

    poses: np.ndarray
    pairs: np.ndarray
    files: str = "frame"


def resolve_counts(mode: str, pairs: Optional[int], frames: Optional[int]) -> Tuple[int, int]:
    """``(frames, pairs)`` per patient from whichever of the two the caller gave (neither: 500 frames).

    Random and sweep pairs use two files each; a sonographer walk of F frames offers
    ``len(FRAME_GAPS) * (F - 3)`` pairs.
    """
    check_choice("phantom trajectory", mode, TRAJECTORIES)
    if pairs is not None and pairs < 1:
        raise ConfigError(f"phantom needs >= 1 pair per patient, got {pairs}")
    if pairs is None and frames is None:
        frames = DEFAULT_FRAMES_PER_PATIENT
    if mode in ("random", "sweep"):
        frames = 2 * pairs if frames is None else frames
        pairs = frames // 2 if pairs is None else pairs
        if frames % 2 or frames < 2:
            raise ConfigError(f"{mode} phantom pairs use 2 frames each, so --frames must be an even number >= 2, "
                              f"got {frames}")
        if frames != 2 * pairs:
            raise ConfigError(f"{mode} phantom pairs use 2 frames each: {pairs} pairs need {2 * pairs} frames, "
                              f"got frames_per_patient={frames}")
        return _within_bound(frames), pairs
    longest = max(FRAME_GAPS)
    frames = pairs + longest if frames is None else frames
    if frames <= longest:
        raise ConfigError(f"a sonographer walk needs >= {longest + 1} frames, got {frames}")
    available = len(FRAME_GAPS) * (frames - longest)
    pairs = available if pairs is None else pairs
    if not 1 <= pairs <= available:
        raise ConfigError(f"a sonographer walk of {frames} frames offers 1 to {available} pairs, got {pairs}")
    return _within_bound(frames), pairs


def _within_bound(frames: int) -> int:
    """Refuse a patient of more frames than :data:`MAX_FRAMES_PER_PATIENT` before planning it (a typo's 10**12
    would fill the memory with poses)."""
    if frames > MAX_FRAMES_PER_PATIENT:
        raise ConfigError(f"a phantom patient holds at most {MAX_FRAMES_PER_PATIENT:,} frames, got {frames:,}")
    return frames


def plan_trajectory(mode: str, rng: np.random.Generator, frames: int, pairs: int) -> Trajectory:
    """The poses and pairs of one patient, from counts that :func:`resolve_counts` returned."""
    if mode == "sweep":
        return sweeps(rng, pairs)
    return random_pairs(rng, pairs) if mode == "random" else sonographer_walk(rng, frames, pairs)


def sweeps(rng: np.random.Generator, num_pairs: int) -> Trajectory:
    """As many sweeps as ``num_pairs`` needs (up to ``SWEEP_FRAMES - 4`` pairs each), their frames numbered on:
    sweep ``s``'s frame ``k`` is frame ``s * SWEEP_STRIDE + k`` (the numbers between two sweeps are never
    written; their poses repeat the sweep's last). Pairs start evenly along each sweep."""
    longest = max(SWEEP_GAPS)
    count = -(-num_pairs // (SWEEP_FRAMES - longest))
    shares = np.array(list(SWEEP_GAPS.values()))
    poses, pairs = [], []
    for sweep, pairs_here in enumerate(np.diff(np.linspace(0, num_pairs, count + 1).round().astype(int))):
        sweep_frames = sweep_poses(rng, SWEEP_FRAMES)
        poses += [sweep_frames, np.repeat(sweep_frames[-1:], FRAME_BREAK, axis=0)]
        starts = np.linspace(0, SWEEP_FRAMES - 1 - longest, pairs_here).round().astype(int)
        quota = np.floor(shares * pairs_here).astype(int)  # the real shares, exactly up to rounding
        quota[np.argsort(quota - shares * pairs_here)[: pairs_here - quota.sum()]] += 1
        gaps = rng.permutation(np.repeat(list(SWEEP_GAPS), quota))
        pairs.append(sweep * SWEEP_STRIDE + np.stack([starts, starts + gaps], 1))
    return Trajectory(_labels(np.concatenate(poses)), np.concatenate(pairs), files="pair")


def sweep_poses(rng: np.random.Generator, num_frames: int) -> np.ndarray:
    """``[F, 6]`` one sweep: from a start far from the view (``SWEEP_START``, +-20 % per sweep) to
    ``SWEEP_END``, wandering slowly (a little even once converged) and trembling always."""
    progress = np.arange(num_frames)[:, None] / (num_frames - 1)  # [F, 1]
    remaining = np.clip(1.0 - progress / SWEEP_CONVERGED, 0.0, None)  # 1 at the start, 0 once converged
    start = SWEEP_START * rng.uniform(0.8, 1.2, 6)
    periods = rng.uniform(*WANDER_PERIODS, (3, 6))  # three slow sinusoids per axis, unit variance in all
    phases = rng.uniform(0.0, 2.0 * np.pi, (3, 6))
    frames = np.arange(num_frames)[:, None, None]  # [F, 1, 1]
    wander = np.sqrt(2.0 / 3.0) * np.sin(2.0 * np.pi * frames / periods + phases).sum(1)  # [F, 6]
    tremor = np.empty((num_frames, 6))
    state = rng.normal(0.0, 1.0, 6)
    innovation = np.sqrt(1.0 - TREMOR_MEMORY**2) * rng.normal(0.0, 1.0, (num_frames, 6))
    for frame in range(num_frames):
        tremor[frame] = state
        state = TREMOR_MEMORY * state + innovation[frame]
    wander_scale = np.maximum(remaining * SWEEP_WANDER, SWEEP_HOVER)
    return SWEEP_END + remaining * (start - SWEEP_END) + wander_scale * wander + SWEEP_TREMOR * tremor


def random_pairs(rng: np.random.Generator, num_pairs: int) -> Trajectory:
    """Independent pairs: frame ``s i`` is t1 and ``s i + 1`` is t2 of pair ``i`` (``s`` = ``RANDOM_PAIR_STRIDE``;
    the numbers between are never written); the move is independent of at1."""
    at1 = _labels(rng.uniform(-1.0, 1.0, (num_pairs, 6)) * (POSE_LIMITS - MOVE_LIMITS))
    move = _labels(rng.uniform(-1.0, 1.0, (num_pairs, 6)) * MOVE_LIMITS)
    poses = np.zeros((num_pairs, RANDOM_PAIR_STRIDE, 6))
    poses[:, 0], poses[:, 1] = at1, _labels(at1 + move)
    starts = np.arange(num_pairs) * RANDOM_PAIR_STRIDE
    return Trajectory(poses.reshape(-1, 6), np.stack([starts, starts + 1], 1))


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
