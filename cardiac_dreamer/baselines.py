"""Baselines a guidance model is scored against on the same patients: the training mean, and the move alone.

* ``train_mean``: the mean at1 of the training pairs for every pair. Guidance that does not beat it by a wide margin
  has learnt nothing from the image.
* ``move_only``: a small MLP from the t1 -> t2 move to at1, trained on the same training patients. It sees no image.
  Whatever it achieves is what the move alone says about the pose (a sonographer who moves toward the view makes
  the move predict the pose), so a model fed the real move must beat it before its composed prediction means anything.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from torch import nn

from .data.normalization import AxisStats
from .data.records import TransitionRecord

MOVE_ONLY_HIDDEN = 64
MOVE_ONLY_STEPS = 400
MOVE_ONLY_LR = 3e-3


def train_mean_predictions(train: Sequence[TransitionRecord], evaluated: Sequence[TransitionRecord]) -> np.ndarray:
    """``[N, 6]``: the training pairs' mean at1 (mm, degrees) for each evaluated pair."""
    mean = np.mean([record.at1 for record in train], axis=0)
    return np.tile(mean, (len(evaluated), 1))


def move_only_predictions(train: Sequence[TransitionRecord], val: Sequence[TransitionRecord],
                          evaluated: Sequence[TransitionRecord], seed: int) -> np.ndarray:
    """``[N, 6]`` at1 predicted from each evaluated pair's move by an MLP fitted on ``train`` (full batch, Adam),
    keeping the weights with the lowest loss on ``val`` (the same selection the image models get)."""
    moves, poses = _arrays(train)
    move_stats, pose_stats = AxisStats.fit(moves), AxisStats.fit(poses)

    def inputs(records):
        return torch.from_numpy(move_stats.normalize(_arrays(records)[0])).float()

    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = nn.Sequential(nn.Linear(6, MOVE_ONLY_HIDDEN), nn.GELU(), nn.Linear(MOVE_ONLY_HIDDEN, MOVE_ONLY_HIDDEN),
                              nn.GELU(), nn.Linear(MOVE_ONLY_HIDDEN, 6))
        x_train, y_train = inputs(train), torch.from_numpy(pose_stats.normalize(poses)).float()
        x_val = inputs(val)
        y_val = torch.from_numpy(pose_stats.normalize(_arrays(val)[1])).float()
        optimizer = torch.optim.Adam(model.parameters(), lr=MOVE_ONLY_LR)
        best, best_state = float("inf"), None
        for _ in range(MOVE_ONLY_STEPS):
            loss = nn.functional.smooth_l1_loss(model(x_train), y_train)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            with torch.no_grad():
                val_loss = nn.functional.smooth_l1_loss(model(x_val), y_val).item()
            if val_loss < best:
                best, best_state = val_loss, {k: v.clone() for k, v in model.state_dict().items()}
        model.load_state_dict(best_state)
        with torch.no_grad():
            predicted = model(inputs(evaluated)).double().numpy()
    return pose_stats.denormalize(predicted)


def _arrays(records: Sequence[TransitionRecord]) -> tuple[np.ndarray, np.ndarray]:
    """``(moves [N, 6], at1 [N, 6])`` in mm and degrees, float64."""
    return (np.asarray([r.action_change for r in records], dtype=np.float64).reshape(-1, 6),
            np.asarray([r.at1 for r in records], dtype=np.float64).reshape(-1, 6))
