"""What the sequential estimator reads, built from the frames of a split: chains of numbered frames
(:mod:`cardiac_dreamer.data.chains`) with each frame encoded once by the model (pooled features, its own estimate)
and the moves from each frame to the present. The sequence stage trains on them and evaluation scores on them; the
estimator itself is :mod:`cardiac_dreamer.models.sequence`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence, Tuple

import numpy as np
import torch
from torch import nn

from ..data.chains import Chains, build_chains
from ..data.records import TransitionRecord
from ..data.transforms import images_to_float, read_grayscale
from ..geometry import move_between
from .backbone import FEATURE_CHANNELS
from .sequence import fuse


def fuse_chains(model: nn.Module, chains: ChainSet, batch_size: int = 1024) -> torch.Tensor:
    """:func:`fuse` over every chain of ``chains`` (full chains), in batches: ``[N, 6]`` mm and degrees."""
    return torch.cat([fuse(model, chains.features[rows], chains.estimates[rows], chains.moves[rows],
                           chains.present[rows]) for rows in torch.arange(len(chains)).split(batch_size)])


@torch.inference_mode()
def encode_frames(model: nn.Module, images: Sequence, image_size: int, device: torch.device,
                  batch_size: int = 64) -> Tuple[torch.Tensor, torch.Tensor]:
    """``(pooled features [F, 512], image-only estimates [F, 6] mm and degrees)`` of image files, on the CPU, with
    the model in eval mode (restored after): what the fuser reads, computed once per frame."""
    was_training = model.training
    model.to(device).eval()
    pooled, estimates = [], []
    try:
        for start in range(0, len(images), batch_size):
            batch = np.stack([read_grayscale(path, image_size) for path in images[start:start + batch_size]])
            features = model.backbone(images_to_float(torch.from_numpy(batch)[:, None].to(device)))  # [b, 512, h, w]
            pooled.append(features.mean((2, 3)).float().cpu())
            estimates.append(model.estimate(features).float().cpu())
    finally:
        model.train(was_training)
    if not pooled:
        return torch.zeros(0, FEATURE_CHANNELS), torch.zeros(0, 6)
    return torch.cat(pooled), torch.cat(estimates)


def chain_inputs(index: np.ndarray, poses: torch.Tensor, features: torch.Tensor, estimates: torch.Tensor,
                 composition: str) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(features [N, K, 512], estimates [N, K, 6], moves [N, K, 6], present [N, K])`` of the chains ``index``
    ``[N, K]`` (:class:`~cardiac_dreamer.data.chains.Chains`) over frames with labelled ``poses [F, 6]``; the
    moves are :func:`chain_moves`'."""
    moves, present = chain_moves(index, poses, composition)
    safe = _padding_at_current(index)
    return features[safe], estimates[safe], moves, present


def chain_moves(index: np.ndarray, poses: torch.Tensor, composition: str) -> Tuple[torch.Tensor, torch.Tensor]:
    """``(moves [N, K, 6], present [N, K])``: the move from each frame of the chains ``index`` to the current one
    (zeros for padding), following from the frames' labelled ``poses [F, 6]`` (``move_between``), as the session's
    tracker would report it."""
    present = torch.from_numpy(index >= 0)
    safe = _padding_at_current(index)
    moves = move_between(poses[safe], poses[safe[:, :1]].expand(-1, safe.shape[1], -1), composition)
    return torch.where(present[..., None], moves, torch.zeros_like(moves)).float(), present


def _padding_at_current(index: np.ndarray) -> torch.Tensor:
    """``index`` with its padding (-1) pointing at the chain's current frame."""
    return torch.from_numpy(np.where(index >= 0, index, index[:, :1]))


@dataclass(frozen=True)
class ChainSet:
    """Chains with their inputs, ready for the fuser (CPU tensors)."""

    features: torch.Tensor  # [N, K, 512]
    estimates: torch.Tensor  # [N, K, 6] each frame's own estimate, mm and degrees
    moves: torch.Tensor  # [N, K, 6] from each frame to the current one
    present: torch.Tensor  # [N, K]
    targets: torch.Tensor  # [N, 6] the current frame's at1

    def __len__(self) -> int:
        return len(self.targets)


def chain_set(model: nn.Module, records: Sequence[TransitionRecord], frames: int, image_size: int,
              device: torch.device) -> Tuple[ChainSet, Chains]:
    """Build the chains of ``records`` and encode their frames once with ``model``."""
    chains = build_chains(records, frames)
    features, estimates = encode_frames(model, [frame.image for frame in chains.frames], image_size, device)
    poses = frame_poses(chains)
    inputs = chain_inputs(chains.index, poses, features, estimates, model.config.composition)
    return ChainSet(*inputs, current_poses(chains, poses).float()), chains


def frame_poses(chains: Chains) -> torch.Tensor:
    """float64 ``[F, 6]``: the labelled pose of every frame of ``chains``."""
    return torch.tensor([frame.pose for frame in chains.frames], dtype=torch.float64).reshape(-1, 6)


def current_poses(chains: Chains, poses: torch.Tensor) -> torch.Tensor:
    """``[N, 6]``: the current frame's pose (at1) of each chain, what the fuser predicts."""
    return poses[torch.from_numpy(chains.index[:, 0])] if len(chains) else poses.new_zeros(0, 6)
