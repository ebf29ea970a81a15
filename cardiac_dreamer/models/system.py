"""The two variants: GuidanceModel (backbone + guidance head, the deployed image-only guidance, ``"direct"``) and
CardiacDreamer (the same plus the dreamer, the world model, ``"dreamer"``).

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
from typing import Dict, Optional

import torch
from torch import nn

from ..config import ModelConfig
from ..data.normalization import AxisStats, NormalizationStats
from ..errors import ConfigError
from ..geometry import undo_move
from .backbone import STRIDE, build_backbone
from .dreamer import MOVE_DIM, Dreamer, LatentPredictor
from .guidance import GuidanceHead
from .sequence import build_sequence_estimator


class GuidanceModel(nn.Module):
    """The image-only guidance, the ``"direct"`` variant: ``forward(image_t1 [B, 1, H, W], move=None) -> {"at1"}``.

    ``"at1"`` [B, 6] is the pose at t1 in mm and degrees, from the image alone; a move is ignored
    (:attr:`can_imagine` is False). A world-model variant subclasses it, builds its parts in
    :meth:`_build_world_model` and returns its imagined outputs from :meth:`imagine`. Images are normalized floats
    (:func:`~cardiac_dreamer.data.images_to_float`). Works with channels_last models and inputs.
    """

    variant = "direct"
    can_imagine = False  # whether forward(images, moves) also returns the pose after each move

    def __init__(self, config: Optional[ModelConfig] = None, image_size: int = 224,
                 activation_checkpointing: bool = False, **overrides) -> None:
        super().__init__()
        self.config = _merge_config(type(self).__name__, self.variant, config, overrides)
        if image_size <= 0 or image_size % STRIDE:
            raise ConfigError(f"model image_size must be a positive multiple of {STRIDE}, got {image_size}")
        self.image_size = image_size
        cfg = self.config
        self.backbone = build_backbone(cfg.pretrained, cfg.pretrained_weights, cfg.freeze_backbone_layers,
                                       cfg.backbone)
        # Built between the backbone and the head: the creation order fixes the seeded initial weights and the
        # parameter order that saved optimizer states follow, as in checkpoints of earlier versions.
        self._build_world_model(activation_checkpointing)
        self.guidance = GuidanceHead(dropout=cfg.dropout)
        for name in ("pose_mean", "move_mean"):
            self.register_buffer(name, torch.zeros(MOVE_DIM))
        for name in ("pose_std", "move_std"):
            self.register_buffer(name, torch.ones(MOVE_DIM))
        self.sequence = build_sequence_estimator(cfg.sequence_frames)  # None when off; fitted after the main fit

    def _build_world_model(self, activation_checkpointing: bool) -> None:
        """The modules a world-model variant adds; the image-only guidance has none."""

    def imagine(self, features_t1: torch.Tensor, move: torch.Tensor) -> Dict[str, torch.Tensor]:
        """The outputs of a move from the t1 features; only variants that :attr:`can_imagine` have any."""
        raise NotImplementedError(f"the {self.variant!r} variant has no world model to imagine moves with")

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
        if self.can_imagine and move is not None:
            outputs.update(self.imagine(features_t1, move))
        return outputs

    def estimate(self, features_t1: torch.Tensor) -> torch.Tensor:
        """``[B, 512, h, w] -> [B, 6]``: at1 from the backbone's features, the image-only guidance."""
        return self._to_pose(self.guidance(features_t1))

    def _to_pose(self, standardized: torch.Tensor) -> torch.Tensor:
        """The head's standardized output -> mm and degrees, in float32 whatever the autocast precision."""
        with torch.autocast(device_type=standardized.device.type, enabled=False):
            return standardized.float() * self.pose_std + self.pose_mean


class CardiacDreamer(GuidanceModel):
    """The world model, the ``"dreamer"`` variant: the guidance plus a dreamer that imagines the t2 features.

    ``forward(image_t1, move [B, 6])`` adds ``"at2"`` [B, 6] (the pose the world model imagines after the move),
    ``"at1_composed"`` [B, 6] (at2 with the move undone), ``"features_t2_pred"`` [B, 512, h, w], and its readings
    in the latent target's space, ``"latent_t2_features"`` and ``"latent_change"`` (what the dreamer changed), from
    which :func:`~cardiac_dreamer.losses.latent_prediction` makes the latent term's prediction, to ``"at1"``.
    """

    variant = "dreamer"
    can_imagine = True

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.latent_predictor = LatentPredictor()  # built last: earlier checkpoints' parameter order stays a prefix

    def _build_world_model(self, activation_checkpointing: bool) -> None:
        cfg = self.config
        self.dreamer = Dreamer(
            self.image_size // STRIDE,
            d_model=cfg.d_model,
            num_heads=cfg.num_heads,
            num_layers=cfg.num_layers,
            dim_feedforward=cfg.dim_feedforward,
            dropout=cfg.dropout,
            token_type=cfg.token_type,
            activation_checkpointing=activation_checkpointing,
        )

    def imagine(self, features_t1: torch.Tensor, move: torch.Tensor) -> Dict[str, torch.Tensor]:
        outputs = self._imagine_poses(features_t1, move)
        # In float32: the change is the difference of two close readings, which bf16 would round again. The bias
        # cancels in it but stays in the graph, so data-parallel training finds every parameter used.
        with torch.autocast(device_type=features_t1.device.type, enabled=False):
            reading_t2, reading_t1 = (self.latent_predictor(features.float())
                                      for features in (outputs["features_t2_pred"], features_t1))
        return {**outputs, "latent_t2_features": reading_t2, "latent_change": reading_t2 - reading_t1}

    def imagine_moves(self, features_t1: torch.Tensor, moves: torch.Tensor) -> torch.Tensor:
        """``[1, 512, h, w], [K, 6] -> [K, 6]``: the at2 imagined after each of K moves from one encoded image (a
        planner comparing K candidate moves pays one backbone pass, not K, and no latent reading)."""
        return self._imagine_poses(features_t1.expand(len(moves), -1, -1, -1), moves)["at2"]

    def _imagine_poses(self, features_t1: torch.Tensor, move: torch.Tensor) -> Dict[str, torch.Tensor]:
        """The dreamed t2 features and the poses read from them; the latent readings only train and diagnose."""
        move = move.float()
        standardized_move = (move - self.move_mean) / self.move_std  # the caller speaks mm and degrees
        features_t2_pred = self.dreamer(features_t1, standardized_move)
        at2 = self._to_pose(self.guidance(features_t2_pred))
        return {"at2": at2, "at1_composed": self._undo_move(at2, move), "features_t2_pred": features_t2_pred}

    def _undo_move(self, at2: torch.Tensor, move: torch.Tensor) -> torch.Tensor:
        """at1 from at2 and the move, in float32 outside autocast: rotation matrices lose whole degrees in bf16."""
        with torch.autocast(device_type=at2.device.type, enabled=False):
            return undo_move(at2.float(), move.float(), self.config.composition)


def _merge_config(name: str, variant: str, config: Optional[ModelConfig], overrides: Dict[str, object]) -> ModelConfig:
    """``config`` (or the defaults) with ``overrides`` laid over it, validated by ModelConfig itself, for the class
    of ``variant`` (a config of another variant is refused: :func:`~cardiac_dreamer.models.build_model` picks)."""
    values = dataclasses.asdict(config if config is not None else ModelConfig())
    unknown = sorted(set(overrides) - set(values))
    if unknown:
        raise ConfigError(f"{name}: unknown model option(s) {', '.join(unknown)} (valid: {', '.join(sorted(values))})")
    if config is None:
        values["variant"] = variant
    merged = ModelConfig(**{**values, **overrides})
    if merged.variant != variant:
        raise ConfigError(f"{name} is the {variant!r} variant, not {merged.variant!r}: build the model with "
                          f"cardiac_dreamer.models.build_model(config)")
    return merged
