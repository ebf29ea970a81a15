"""CardiacDreamer: backbone + dreamer + guidance head, and the composition of the t2 pose back to t1.

The guidance head predicts the pose at t2 from the imagined t2 features; the pose at t1 (the task) follows by undoing
the known move. Undoing is only meaningful in physical units (millimetres and degrees), so the model holds the
normalization statistics as buffers: they travel with every checkpoint and the model cannot be run with the wrong ones.
"""
from __future__ import annotations

import dataclasses
from typing import Dict, Optional

import torch
from torch import nn

from ..config import ModelConfig
from ..data.normalization import AxisStats, NormalizationStats
from ..errors import ConfigError
from ..geometry import undo_move
from .backbone import STRIDE, build_backbone
from .dreamer import MOVE_DIM, Dreamer
from .guidance import GuidanceHead


class CardiacDreamer(nn.Module):
    """``forward(image_t1 [B,1,H,W], action_change [B,6], image_t2=None) -> dict`` of standardized outputs.

    Outputs: ``"at1"`` [B, 6] always; for the ``"dreamer"`` variant also ``"at2"`` [B, 6] and
    ``"features_t2_pred"`` [B, 512, h, w], plus the detached target ``"features_t2"`` when ``image_t2`` is given.
    The ``"direct"`` variant (the ablation) predicts at1 from the t1 image alone and ignores the move and image_t2.
    Works with channels_last models and inputs (``model.to(memory_format=torch.channels_last)``).
    """

    def __init__(self, config: Optional[ModelConfig] = None, image_size: int = 224, **overrides) -> None:
        super().__init__()
        self.config = _merge_config(config, overrides)
        if image_size <= 0 or image_size % STRIDE:
            raise ConfigError(f"model image_size must be a positive multiple of {STRIDE}, got {image_size}")
        self.image_size = image_size
        cfg = self.config
        self.backbone = build_backbone(cfg.pretrained, cfg.pretrained_weights, cfg.freeze_backbone_layers)
        self.dreamer = None
        if cfg.variant == "dreamer":
            self.dreamer = Dreamer(
                image_size // STRIDE,
                d_model=cfg.d_model,
                num_heads=cfg.num_heads,
                num_layers=cfg.num_layers,
                dim_feedforward=cfg.dim_feedforward,
                dropout=cfg.dropout,
                token_type=cfg.token_type,
            )
        self.guidance = GuidanceHead(dropout=cfg.dropout)
        for name in ("pose_mean", "move_mean"):
            self.register_buffer(name, torch.zeros(MOVE_DIM))
        for name in ("pose_std", "move_std"):
            self.register_buffer(name, torch.ones(MOVE_DIM))

    def set_normalization(self, stats: NormalizationStats) -> None:
        """Copy the (training) statistics into the buffers, so they are saved with the weights."""
        for prefix, axis in (("pose", stats.pose), ("move", stats.move)):
            for field in ("mean", "std"):
                buffer = getattr(self, f"{prefix}_{field}")
                buffer.copy_(torch.as_tensor(getattr(axis, field), dtype=buffer.dtype))

    @property
    def normalization(self) -> NormalizationStats:
        def axis(prefix: str) -> AxisStats:
            mean, std = getattr(self, f"{prefix}_mean"), getattr(self, f"{prefix}_std")
            return AxisStats(mean=mean.tolist(), std=std.tolist())

        return NormalizationStats(pose=axis("pose"), move=axis("move"))

    def forward(
        self, image_t1: torch.Tensor, action_change: torch.Tensor, image_t2: Optional[torch.Tensor] = None
    ) -> Dict[str, torch.Tensor]:
        features_t1 = self.backbone(image_t1)  # [B, 1, H, W] -> [B, 512, H/32, W/32]
        if self.dreamer is None:
            return {"at1": self.guidance(features_t1)}
        features_t2_pred = self.dreamer(features_t1, action_change)
        at2 = self.guidance(features_t2_pred)
        outputs = {"at1": self.compose_at1(at2, action_change), "at2": at2, "features_t2_pred": features_t2_pred}
        if image_t2 is not None:
            # The latent target: its own pass (no backward through it) rather than a doubled batch.
            with torch.no_grad():
                outputs["features_t2"] = self.backbone(image_t2).detach()
        return outputs

    def compose_at1(self, at2: torch.Tensor, action_change: torch.Tensor) -> torch.Tensor:
        """Standardized at1 from standardized at2 and move, by undoing the move in mm and degrees.

        Runs in float32 at least, outside autocast: rotation matrices and their inverse lose whole degrees in bf16.
        """
        dtype = torch.promote_types(at2.dtype, torch.float32)
        pose_mean, pose_std = self.pose_mean.to(dtype), self.pose_std.to(dtype)
        with torch.autocast(device_type=at2.device.type, enabled=False):
            at2_phys = at2.to(dtype) * pose_std + pose_mean
            move_phys = action_change.to(dtype) * self.move_std.to(dtype) + self.move_mean.to(dtype)
            at1_phys = undo_move(at2_phys, move_phys, self.config.composition)
            return (at1_phys - pose_mean) / pose_std


def _merge_config(config: Optional[ModelConfig], overrides: Dict[str, object]) -> ModelConfig:
    """``config`` (or the defaults) with ``overrides`` laid over it, validated by ModelConfig itself."""
    values = dataclasses.asdict(config if config is not None else ModelConfig())
    unknown = sorted(set(overrides) - set(values))
    if unknown:
        raise ConfigError(
            f"CardiacDreamer: unknown model option(s) {', '.join(unknown)} (valid: {', '.join(sorted(values))})"
        )
    return ModelConfig(**{**values, **overrides})
