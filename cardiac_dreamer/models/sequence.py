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

from dataclasses import dataclass
from typing import Optional, Sequence, Tuple

import numpy as np
import torch
from torch import nn

from ..data.chains import Chains, build_chains
from ..data.records import TransitionRecord
from ..data.transforms import images_to_float, read_grayscale
from ..geometry import apply_move, move_between

FEATURES = 512  # channels of the pooled backbone features
WIDTH, HEADS, LAYERS = 64, 4, 2  # ~110k weights: small beside the backbone, cheap to train on CPU


class SequenceEstimator(nn.Module):
    """``forward(features [B, T, 512], poses [B, T, 6], moves [B, T, 6], present [B, T]) -> [B, 6]``, all
    standardized: token 0 is the current frame, ``poses`` each frame's own estimate carried to the present (in pose
    stds about the pose mean), ``moves`` the accumulated move from it to the present (in pose stds), ``present``
    False for padding. The output is the current frame's standardized at1."""

    def __init__(self, frames: int):
        super().__init__()
        self.frames = frames
        self.feature_norm = nn.LayerNorm(FEATURES)
        self.feature_proj = nn.Linear(FEATURES, WIDTH)
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
        return torch.zeros(0, FEATURES), torch.zeros(0, 6)
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
