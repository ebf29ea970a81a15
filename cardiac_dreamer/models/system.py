"""CardiacDreamer: backbone + guidance head (the deployed, image-only guidance) + the dreamer (the world model).

The model takes and returns physical units at its public edge: moves in, poses out, in millimetres and degrees.
It holds the training normalization statistics as buffers and standardizes inside, so the statistics travel in every
checkpoint, there is one copy of them, and nothing outside the model can standardize with the wrong ones.

Two paths share the backbone and the guidance head:

* guidance: ``image_t1 -> backbone -> head -> at1``, what a sonographer gets from the current image alone;
* world model: ``features_t1 + move -> dreamer -> imagined t2 features -> head -> at2``, and ``at1_composed``, at2
  with the move undone, which training holds consistent with the image-only at1.
"""
from __future__ import annotations

import dataclasses
from typing import Dict, Mapping, Optional

import torch
from torch import nn

from ..checkpoint import ModelCheckpoint
from ..config import Config, ModelConfig
from ..data.normalization import AxisStats, NormalizationStats
from ..errors import CheckpointError, ConfigError, DataError
from ..geometry import undo_move
from .backbone import STRIDE, build_backbone
from .dreamer import MOVE_DIM, Dreamer
from .guidance import GuidanceHead


class CardiacDreamer(nn.Module):
    """``forward(image_t1 [B, 1, H, W], move [B, 6] or None) -> dict`` of poses in mm and degrees.

    Outputs: ``"at1"`` [B, 6], from the image alone, always. With the ``"dreamer"`` variant and a move, also
    ``"at2"`` [B, 6] (the pose the world model imagines after the move), ``"at1_composed"`` [B, 6] (at2 with the
    move undone) and ``"features_t2_pred"`` [B, 512, h, w]. The ``"direct"`` variant (the ablation) has no dreamer.
    Images are normalized floats (:func:`~cardiac_dreamer.data.images_to_float`). Works with channels_last models
    and inputs (``model.to(memory_format=torch.channels_last)``).
    """

    def __init__(self, config: Optional[ModelConfig] = None, image_size: int = 224,
                 activation_checkpointing: bool = False, **overrides) -> None:
        super().__init__()
        self.config = _merge_config(config, overrides)
        if image_size <= 0 or image_size % STRIDE:
            raise ConfigError(f"model image_size must be a positive multiple of {STRIDE}, got {image_size}")
        self.image_size = image_size
        cfg = self.config
        self.backbone = build_backbone(cfg.pretrained, cfg.pretrained_weights, cfg.freeze_backbone_layers,
                                       cfg.backbone)
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
                activation_checkpointing=activation_checkpointing,
            )
        self.guidance = GuidanceHead(dropout=cfg.dropout)
        for name in ("pose_mean", "move_mean"):
            self.register_buffer(name, torch.zeros(MOVE_DIM))
        for name in ("pose_std", "move_std"):
            self.register_buffer(name, torch.ones(MOVE_DIM))

    @classmethod
    def from_checkpoint(cls, checkpoint: ModelCheckpoint, source: str = "checkpoint") -> "CardiacDreamer":
        """The network a checkpoint describes, with its weights and statistics, in eval mode.

        The recorded config is validated (bounded sizes) and every tensor's shape is checked against a model built
        on the meta device (no memory) before the real one is allocated, so a hostile or foreign checkpoint fails
        with one line instead of exhausting memory. ``pretrained`` is switched off: the saved weights replace any
        ImageNet start, which need not exist here.
        """
        config = Config.from_dict(checkpoint.config, source=f"{source}: config")
        model_cfg = dataclasses.replace(config.model, pretrained=False, pretrained_weights=None)
        with torch.device("meta"):
            skeleton = cls(model_cfg, image_size=config.data.image_size)
        _check_state_shapes(skeleton.state_dict(), checkpoint.model_state, source)
        model = cls(model_cfg, image_size=config.data.image_size)
        model.load_state_dict(checkpoint.model_state)
        try:
            model.normalization  # reading the statistics validates them: finite, std > 0
        except DataError as error:
            raise CheckpointError(f"{source}: {error}") from None
        return model.eval()

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

    def forward(self, image_t1: torch.Tensor, move: Optional[torch.Tensor] = None) -> Dict[str, torch.Tensor]:
        features_t1 = self.backbone(image_t1)  # [B, 1, H, W] -> [B, 512, H/32, W/32]
        outputs = {"at1": self.estimate(features_t1)}
        if self.dreamer is None or move is None:
            return outputs
        outputs.update(self._dream(features_t1, move))
        return outputs

    def estimate(self, features_t1: torch.Tensor) -> torch.Tensor:
        """``[B, 512, h, w] -> [B, 6]``: at1 from the backbone's features, the image-only guidance."""
        return self._to_pose(self.guidance(features_t1))

    def imagine(self, features_t1: torch.Tensor, moves: torch.Tensor) -> torch.Tensor:
        """``[1, 512, h, w], [K, 6] -> [K, 6]``: the at2 imagined after each of K moves from one encoded image (a
        planner comparing K candidate moves pays one backbone pass, not K)."""
        return self._dream(features_t1.expand(len(moves), -1, -1, -1), moves)["at2"]

    def _dream(self, features_t1: torch.Tensor, move: torch.Tensor) -> Dict[str, torch.Tensor]:
        """The world model's outputs from t1 features and a move in mm and degrees."""
        move = move.float()
        move_std = (move - self.move_mean) / self.move_std  # standardized inside: the caller speaks mm and degrees
        features_t2_pred = self.dreamer(features_t1, move_std)
        at2 = self._to_pose(self.guidance(features_t2_pred))
        return {"at2": at2, "at1_composed": self._undo_move(at2, move), "features_t2_pred": features_t2_pred}

    def _to_pose(self, standardized: torch.Tensor) -> torch.Tensor:
        """The head's standardized output -> mm and degrees, in float32 whatever the autocast precision."""
        with torch.autocast(device_type=standardized.device.type, enabled=False):
            return standardized.float() * self.pose_std + self.pose_mean

    def _undo_move(self, at2: torch.Tensor, move: torch.Tensor) -> torch.Tensor:
        """at1 from at2 and the move, in float32 outside autocast: rotation matrices lose whole degrees in bf16."""
        with torch.autocast(device_type=at2.device.type, enabled=False):
            return undo_move(at2.float(), move.float(), self.config.composition)


def _check_state_shapes(expected: Mapping[str, torch.Tensor], found: Mapping[str, torch.Tensor], source: str) -> None:
    missing = sorted(set(expected) - set(found))
    unexpected = sorted(set(found) - set(expected))
    if missing or unexpected:
        detail = f"missing {', '.join(missing[:3])}" if missing else f"unexpected {', '.join(unexpected[:3])}"
        raise CheckpointError(f"{source}: weights do not fit the recorded model ({detail})")
    for key, tensor in expected.items():
        if tuple(found[key].shape) != tuple(tensor.shape):
            raise CheckpointError(f"{source}: weights do not fit the recorded model ({key} has shape "
                                  f"{tuple(found[key].shape)}, the model needs {tuple(tensor.shape)})")


def _merge_config(config: Optional[ModelConfig], overrides: Dict[str, object]) -> ModelConfig:
    """``config`` (or the defaults) with ``overrides`` laid over it, validated by ModelConfig itself."""
    values = dataclasses.asdict(config if config is not None else ModelConfig())
    unknown = sorted(set(overrides) - set(values))
    if unknown:
        raise ConfigError(
            f"CardiacDreamer: unknown model option(s) {', '.join(unknown)} (valid: {', '.join(sorted(values))})"
        )
    return ModelConfig(**{**values, **overrides})
