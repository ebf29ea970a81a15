"""The sequential estimator: at1 of the current frame from it and the frames before it, each carried to the present
through the moves made since (``model.sequence_frames`` = K, the current frame and up to K-1 before it).

One frame's estimate is noisy; the frames the probe saw before, with the known moves since, are more looks at the
same anatomy. A small attention fuser reads one token per frame: its pooled backbone features, its own image-only
estimate carried to the present through the accumulated move, and that move, plus a learned current / past role.
It outputs a correction to the current frame's estimate, zero at initialisation, so an untrained fuser is the single
frame. It is trained after the main fit on the frozen backbone's features
(:mod:`cardiac_dreamer.training.sequence_stage`), so it never changes the image-only guidance, and it is saved in
the model's state dict (``sequence.*``) with a ``trained`` flag: a checkpoint whose fuser was not trained (a top-k
file other than the best) guides from the single frame.
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from ..geometry import apply_move
from .backbone import FEATURE_CHANNELS

WIDTH, HEADS, LAYERS = 64, 4, 2  # ~100k weights: small beside the backbone, cheap to train on CPU


class SequenceEstimator(nn.Module):
    """``forward(features [B, T, 512], poses [B, T, 6], moves [B, T, 6], present [B, T]) -> [B, 6]``, all
    standardized: token 0 is the current frame, ``poses`` each frame's own estimate carried to the present (in pose
    stds about the pose mean), ``moves`` the accumulated move from it to the present (in pose stds), ``present``
    False for padding. The output is the current frame's standardized at1."""

    def __init__(self, frames: int):
        super().__init__()
        self.frames = frames
        self.feature_norm = nn.LayerNorm(FEATURE_CHANNELS)
        self.feature_proj = nn.Linear(FEATURE_CHANNELS, WIDTH)
        self.pose_proj = nn.Linear(6, WIDTH)
        self.move_proj = nn.Linear(6, WIDTH)
        self.role = nn.Embedding(2, WIDTH)  # 0: the current frame, 1: a past one
        layer = nn.TransformerEncoderLayer(WIDTH, HEADS, 2 * WIDTH, dropout=0.1, batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, LAYERS, enable_nested_tensor=False)
        self.out_norm = nn.LayerNorm(WIDTH)
        self.out = nn.Linear(WIDTH, 6)
        self.register_buffer("trained", torch.zeros(()))  # 1 once the sequence stage has fitted it
        self.untrain()

    @torch.no_grad()
    def untrain(self) -> None:
        """Make the output the current frame's own estimate (a zero correction) and mark it untrained."""
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)
        self.trained.zero_()

    @property
    def is_trained(self) -> bool:
        return bool(self.trained)

    def forward(self, features: torch.Tensor, poses: torch.Tensor, moves: torch.Tensor,
                present: torch.Tensor) -> torch.Tensor:
        roles = torch.ones(present.shape, dtype=torch.long, device=present.device)
        roles[:, 0] = 0
        tokens = (self.feature_proj(self.feature_norm(features)) + self.pose_proj(poses) + self.move_proj(moves)
                  + self.role(roles))  # [B, T, WIDTH]
        encoded = self.encoder(tokens, src_key_padding_mask=~present)
        return poses[:, 0] + self.out(self.out_norm(encoded[:, 0]))  # [B, 6]


def build_sequence_estimator(frames: int) -> Optional[SequenceEstimator]:
    """None when off (0). Built on a forked RNG, so a run with it draws the same initial weights and data order as
    one without, and frozen: the main fit leaves it alone (no gradient, nothing unused under DDP)."""
    if not frames:
        return None
    with torch.random.fork_rng(devices=[]):
        return SequenceEstimator(frames).requires_grad_(False)


def sequence_frames(model: nn.Module) -> int:
    """K when ``model`` holds a trained sequential estimator, else 0 (guidance from the single frame)."""
    estimator = getattr(getattr(model, "module", model), "sequence", None)
    return estimator.frames if estimator is not None and estimator.is_trained else 0


def fuse(model: nn.Module, features: torch.Tensor, estimates: torch.Tensor, moves: torch.Tensor,
         present: torch.Tensor) -> torch.Tensor:
    """at1 of the current frame in mm and degrees, ``[B, 6]``, from ``features [B, T, 512]`` (pooled), each frame's
    own estimate ``[B, T, 6]`` and the accumulated move from it to the present ``[B, T, 6]`` (mm, degrees; zero for
    the current frame, token 0), padding where ``present [B, T]`` is False."""
    carried = apply_move(estimates, moves, model.config.composition)  # each frame's estimate of the present
    mean, std = model.pose_mean, model.pose_std
    standardized = model.sequence(features.float(), ((carried - mean) / std).float(), (moves / std).float(), present)
    return standardized * std + mean
