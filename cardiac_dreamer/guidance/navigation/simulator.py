"""The simulated sonographer and one guidance episode on a phantom patient.

What is simulated: a phantom heart (:class:`~cardiac_dreamer.synthetic.PhantomPatient`, the renderer and patients
the training data were written with: v4 hearts beat and breathe, each frame caught at a moment of both cycles drawn
from the frame's generator; fresh speckle per frame), a probe whose true pose is known, and a sonographer who
executes each suggested move imperfectly. What is not: probe pressure and skin contact, the time a move takes, a
sonographer who ignores or second-guesses the guidance.

The sonographer's error (``follow_noise`` = n), independently per component and move::

    executed = suggested * (1 + n * N(0, 1)) + n * SLIP * N(0, 1),   SLIP = 5 mm (x, y, z) / 5 degrees (angles)

The first term is a gain error (a 10 mm move comes out 9 or 11 mm at n = 0.1), the second a slip that does not
shrink with the move (0.5 mm / 0.5 degrees per component at n = 0.1), so even perfect guidance needs a few moves.
A sonographer asked for no move at all makes none.

Common random numbers: an episode's start pose, every frame's speckle and cycle phases and every move's noise come
from generators seeded by ``(seed, episode, step)`` alone, so every policy meets the same starts, the same speckle
stream and the same hand: differences between policies are the policies'.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Optional

import numpy as np
import torch

from ...errors import ConfigError
from ...geometry import apply_move
from ...phantom.trajectories import SWEEP_FRAMES, sweep_poses
from ..session import Guidance, within
from ..settings import ARRIVAL_DEG, ARRIVAL_MM, EpisodeSettings, box_text
from .policies import Policy

SLIP = np.array([5.0, 5.0, 5.0, 5.0, 5.0, 5.0])  # mm, mm, mm, deg, deg, deg per unit of follow_noise
_START_STREAM, _SPECKLE_STREAM, _HAND_STREAM = 1, 2, 3
MAX_START_DRAWS = 10_000


@dataclass(frozen=True)
class Step:
    """One pose the probe visited: the true pose, the guidance given there (None when the move budget was spent
    before it) and the move the sonographer then executed (None when none was: arrived, or the last pose)."""

    true_pose: np.ndarray  # [6] mm, deg
    guidance: Optional[Guidance]
    executed: Optional[np.ndarray]  # [6] mm, deg


@dataclass
class Episode:
    policy: str
    patient: str
    number: int  # the episode's number in the run: same number, same start and noise for every policy
    steps: List[Step]
    frames: List[np.ndarray] = field(default_factory=list)  # uint8 [S, S] per consulted step, when kept

    @property
    def start_pose(self) -> np.ndarray:
        return self.steps[0].true_pose

    @property
    def final_pose(self) -> np.ndarray:
        return self.steps[-1].true_pose

    @property
    def said_arrived(self) -> bool:
        last = self.steps[-1].guidance
        return last is not None and last.arrived

    @property
    def executed_moves(self) -> np.ndarray:
        """``[M, 6]``: the moves made, in order."""
        return np.array([step.executed for step in self.steps if step.executed is not None]).reshape(-1, 6)


def start_pose(settings: EpisodeSettings, episode: int) -> np.ndarray:
    """A pose in the start box outside the arrival view: uniform in the box (``starts="box"``), or a frame of a
    fresh phantom sweep (``"sweep"``), where the axes move together as they do when a sonographer closes in on
    the view (roll high while yaw is low), as in the sweeps a model trained on."""
    rng = np.random.default_rng([settings.seed, episode, _START_STREAM])
    low, high = np.asarray(settings.start_low, dtype=np.float64), np.asarray(settings.start_high, dtype=np.float64)
    for _ in range(MAX_START_DRAWS):
        if settings.starts == "box":
            candidates = rng.uniform(low, high, (1, 6))
        else:
            candidates = sweep_poses(rng, SWEEP_FRAMES)[rng.permutation(SWEEP_FRAMES)]  # [F, 6] in random order
        usable = ((candidates >= low) & (candidates <= high)).all(-1) & ~within(candidates, ARRIVAL_MM, ARRIVAL_DEG)
        if usable.any():
            return candidates[np.argmax(usable)]
    drawn = "pose" if settings.starts == "box" else "pose of a phantom sweep"
    raise ConfigError(f"the start box ({box_text(low, high)}) holds almost no {drawn} outside the view (without "
                      "--start_range it is the range of the checkpoint's training poses); give --start_range, e.g. "
                      "20mm,20deg, for a box centred on the view")


def follow(suggested: np.ndarray, follow_noise: float, rng: np.random.Generator) -> np.ndarray:
    """The move a sonographer makes when asked for ``suggested`` (see the module docstring)."""
    suggested = np.asarray(suggested, dtype=np.float64)
    gain, slip = rng.standard_normal(6), rng.standard_normal(6)  # drawn always: the stream stays common
    if not suggested.any():
        return np.zeros(6)
    return suggested * (1.0 + follow_noise * gain) + follow_noise * SLIP * slip


def run_episode(policy: Policy, patient, patient_name: str, episode: int, settings: EpisodeSettings,
                composition: str = "additive", keep_frames: bool = False) -> Episode:
    """Drive the probe from the episode's start pose until the policy says "arrived" or ``max_steps`` frames.

    ``patient`` renders a frame at a pose (``render(pose, rng=...)``, :class:`PhantomPatient`'s signature); the
    true pose moves by each executed move under ``composition``, the convention the model's moves follow.
    """
    pose = start_pose(settings, episode)
    steps: List[Step] = []
    frames: List[np.ndarray] = []
    executed: Optional[np.ndarray] = None
    policy.start()
    for step in range(settings.max_steps):
        image = patient.render(pose, rng=np.random.default_rng([settings.seed, episode, step, _SPECKLE_STREAM]))
        if keep_frames:
            frames.append(image)
        guidance = policy.update(image, pose, executed)
        if guidance.arrived:
            steps.append(Step(pose, guidance, None))
            return Episode(policy.name, patient_name, episode, steps, frames)
        hand = np.random.default_rng([settings.seed, episode, step, _HAND_STREAM])
        executed = follow(guidance.move, settings.follow_noise, hand)
        steps.append(Step(pose, guidance, executed))
        pose = apply_move(torch.from_numpy(pose), torch.from_numpy(executed), composition).numpy()
    steps.append(Step(pose, None, None))  # where the move budget left the probe
    return Episode(policy.name, patient_name, episode, steps, frames)
