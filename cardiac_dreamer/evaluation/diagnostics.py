"""Does the world model use the move it is given? The move-transfer slope, per axis.

For a move ``m`` along one axis, ``(at2(m) - at2(0)) / m``: how much of the move the imagined pose moves by. A world
model that understands moves has slopes near 1 on every axis (the pose after a move is the pose plus the move, under
additive labels); a slope near 0 means the move never reaches the guidance head, and the composed prediction then
carries the whole move as error.
"""
from __future__ import annotations

from typing import List

import torch

from ..geometry import AXIS_NAMES
from ..models.registry import can_imagine

SLOPE_MOVE_STDS = 2.0  # probe moves of this many training move stds: large enough to read, typical of the data


@torch.no_grad()
def move_transfer_slopes(model: torch.nn.Module, images: torch.Tensor, seed: int = 0) -> List[float]:
    """Least-squares slope of the imagined at2 change against the move, axis by axis, over ``images``
    ``[N, 1, H, W]`` (normalized floats on the model's device), each with a random move along that axis of
    :data:`SLOPE_MOVE_STDS` training stds. The model is put in eval mode; its previous mode is restored."""
    if not can_imagine(model):
        raise ValueError("move-transfer slopes need a world model (the 'dreamer' variant)")
    was_training = model.training
    model.eval()
    generator = torch.Generator().manual_seed(seed)
    count = len(images)
    zero = torch.zeros(count, len(AXIS_NAMES), device=images.device)
    base = model(images, zero)["at2"]
    slopes = []
    for axis in range(len(AXIS_NAMES)):
        size = torch.randn(count, generator=generator).to(images.device) * model.move_std[axis] * SLOPE_MOVE_STDS
        move = zero.clone()
        move[:, axis] = size
        change = model(images, move)["at2"][:, axis] - base[:, axis]
        slopes.append(float((change * size).sum() / size.square().sum()))
    model.train(was_training)
    return slopes
