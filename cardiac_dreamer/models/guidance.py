"""The guidance head: a feature map to a 6-DOF probe pose (standardized)."""
from __future__ import annotations

import torch
from torch import nn

from .backbone import FEATURE_CHANNELS

POSE_DIM = 6


class GuidanceHead(nn.Module):
    """``[B, 512, h, w] -> global average pool -> MLP 512 -> 1024 -> 512 -> 6 -> [B, 6]``."""

    def __init__(self, dropout: float = 0.1, in_channels: int = FEATURE_CHANNELS) -> None:
        super().__init__()
        self.mlp = nn.Sequential(
            nn.Linear(in_channels, 1024),
            nn.GELU(),
            nn.Dropout(dropout),
            nn.Linear(1024, 512),
            nn.GELU(),
            nn.Dropout(dropout),
            nn.Linear(512, POSE_DIM),
        )

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.mlp(features.mean(dim=(2, 3)))  # [B, 512, h, w] -> [B, 512] -> [B, 6]
