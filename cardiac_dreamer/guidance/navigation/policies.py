"""Who guides the simulated probe: the model's session, and three baselines that bracket it.

Every policy answers each frame with a :class:`~cardiac_dreamer.guidance.session.Guidance`, so the simulator and the
scoring treat them alike:

* ``model_h<k>`` (``_imagine`` with the world-model planner): a
  :class:`~cardiac_dreamer.guidance.session.GuidanceSession`;
* ``oracle``: the true pose as the estimate: what perfect perception achieves with this sonographer;
* ``stay``: never moves and never says "arrived": what doing nothing achieves;
* ``mean``: believes the probe starts at the training poses' mean and carries that belief through the moves made:
  one move, then "arrived", without reading an image: what a model that learnt nothing suggests.
"""
from __future__ import annotations

from typing import Optional, Protocol

import numpy as np
import torch

from ...geometry import apply_move
from ..session import Guidance, GuidanceSession, suggested_move, within
from ..settings import ARRIVAL_DEG, ARRIVAL_MM

BASELINES = ("oracle", "stay", "mean")


class Policy(Protocol):
    name: str
    description: str

    def start(self) -> None:
        """A new episode begins: forget the last one."""

    def update(self, image, true_pose: np.ndarray, executed_move: Optional[np.ndarray]) -> Guidance:
        """Guidance for this frame; only the oracle may look at ``true_pose``."""


class SessionPolicy:
    """The model, through the runtime a deployment would use."""

    def __init__(self, name: str, session: GuidanceSession):
        self.name, self.session = name, session
        settings = session.settings
        looks = settings.history + 1
        if session.fuses_sequentially:
            fusion, looks = "the sequential estimator's fusion", min(looks, session.sequence_frames)
        else:
            fusion = "the median"
        self.description = (f"the model's GuidanceSession, history {settings.history} (moves on {fusion} of "
                            f"{looks} looks at each pose), planner '{settings.planner}', says "
                            f"arrived within {settings.arrival_mm:g} mm / {settings.arrival_deg:g} degrees")

    def start(self) -> None:
        self.session.reset()

    def update(self, image, true_pose: np.ndarray, executed_move: Optional[np.ndarray]) -> Guidance:
        return self.session.update(image, executed_move)


class BeliefPolicy:
    """A baseline that reads no image: it believes the probe starts at a fixed pose (``mean``) and carries that
    belief through the moves made, as a session carries its estimates, or knows the true pose (``oracle``, belief
    None), or moves never (``stay``); arrival is judged on its belief with the session's default threshold.

    Why carried: a belief that stays at the start pose whatever the probe did asks for the same move at every frame
    and walks the probe away (146 deg off after 20 moves on the demo); carried, ``mean`` makes the one move a
    guidance without images can suggest, then says "arrived"."""

    def __init__(self, name: str, description: str, composition: str, belief: Optional[np.ndarray] = None,
                 moves: bool = True):
        self.name, self.description = name, description
        self.composition, self.belief, self.moves = composition, belief, moves
        self._belief: Optional[torch.Tensor] = None  # the start belief carried through the moves made so far

    def start(self) -> None:
        self._belief = None if self.belief is None else torch.as_tensor(np.asarray(self.belief, dtype=np.float64))

    def update(self, image, true_pose: np.ndarray, executed_move: Optional[np.ndarray]) -> Guidance:
        if not self.moves:
            nowhere = np.full(6, np.nan)
            return Guidance(pose=nowhere, move=np.zeros(6), arrived=False, frames_fused=0, spread_mm=None,
                            spread_deg=None, frame_pose=nowhere)
        if self._belief is not None and executed_move is not None:
            self._belief = apply_move(self._belief, torch.as_tensor(executed_move, dtype=torch.float64),
                                      self.composition)
        pose = np.array(true_pose if self._belief is None else self._belief.numpy(), dtype=np.float64)
        return Guidance(pose=pose, move=suggested_move(pose, self.composition),
                        arrived=within(pose, ARRIVAL_MM, ARRIVAL_DEG), frames_fused=1, spread_mm=None,
                        spread_deg=None, frame_pose=pose)


def baseline_policies(composition: str, training_mean_pose: np.ndarray) -> list:
    """``oracle``, ``stay`` and ``mean``, in that order."""
    return [
        BeliefPolicy("oracle", "the true pose as the estimate: perfect perception, the same sonographer",
                     composition),
        BeliefPolicy("stay", "never moves, never says arrived", composition, moves=False),
        BeliefPolicy("mean", "believes the probe starts at the training poses' mean (the model's pose_mean), "
                     "suggests the move from there to the view and carries the belief through the moves made: "
                     "one move, then 'arrived', without reading an image", composition, belief=training_mean_pose),
    ]
