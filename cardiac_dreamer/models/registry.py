"""The one place that knows the model variants: ``build_model(config, stats)`` and the model of a checkpoint.

A variant is a :class:`~cardiac_dreamer.models.system.GuidanceModel` subclass named by ``model.variant``; what it
can do is said by its capability flags (``can_imagine``), so no caller looks for a particular submodule. Adding a
variant is its class, one line in :data:`VARIANTS` and its name in ``config.VARIANTS`` (the names a config accepts,
checked there without importing torch; a test holds the two alike).
"""
from __future__ import annotations

import dataclasses
from typing import Dict, Mapping, Optional, Type

import torch
from torch import nn

from ..io.checkpoint import ModelCheckpoint
from ..config import Config, ModelConfig
from ..data.normalization import NormalizationStats
from ..errors import CheckpointError, ConfigError, DataError
from .dreamer import LatentPredictor
from .system import CardiacDreamer, GuidanceModel

VARIANTS: Dict[str, Type[GuidanceModel]] = {
    "dreamer": CardiacDreamer,  # the world model: guidance + dreamer
    "direct": GuidanceModel,  # the image alone, the ablation baseline
}


def variant_class(name: str) -> Type[GuidanceModel]:
    try:
        return VARIANTS[name]
    except KeyError:
        raise ConfigError(f"unknown model.variant {name!r} (valid: {', '.join(VARIANTS)})") from None


def build_model(config: Config, stats: Optional[NormalizationStats] = None) -> GuidanceModel:
    """A new model of ``config.model.variant`` for ``config.data.image_size``, with the training statistics
    ``stats`` in its buffers (left at 0 / 1 when None, as for a model about to load a checkpoint)."""
    model = variant_class(config.model.variant)(
        config.model, image_size=config.data.image_size,
        activation_checkpointing=config.training.activation_checkpointing,
    )
    if stats is not None:
        model.set_normalization(stats)
    return model


def can_imagine(model: nn.Module) -> bool:
    """Whether ``model(images, moves)`` returns the poses after the moves (a world model), wrapped or not."""
    return bool(getattr(getattr(model, "module", model), "can_imagine", False))


def model_from_checkpoint(checkpoint: ModelCheckpoint, source: str = "checkpoint") -> GuidanceModel:
    """The network a checkpoint describes, with its weights and statistics, in eval mode.

    The recorded config is validated (bounded sizes) and every tensor's shape is checked against a model built
    on the meta device (no memory) before the real one is allocated, so a hostile or foreign checkpoint fails
    with one line instead of exhausting memory. ``pretrained`` is switched off: the saved weights replace any
    ImageNet start, which need not exist here.
    """
    config = Config.from_stored(checkpoint.config, source=f"{source}: config")
    model_cfg = without_imagenet_start(config.model)
    model_class = variant_class(model_cfg.variant)
    with torch.device("meta"):
        skeleton = model_class(model_cfg, image_size=config.data.image_size)
    state = _with_identity_latent_predictor(skeleton.state_dict(), checkpoint.model_state)
    _check_state(skeleton.state_dict(), state, source)
    model = model_class(model_cfg, image_size=config.data.image_size)
    model.load_state_dict(state)
    try:
        model.normalization  # reading the statistics validates them: finite, std > 0
    except DataError as error:
        raise CheckpointError(f"{source}: {error}") from None
    return model.eval()


def _with_identity_latent_predictor(expected: Mapping[str, torch.Tensor],
                                    found: Mapping[str, torch.Tensor]) -> Mapping[str, torch.Tensor]:
    """A world model saved before the latent predictor existed used its dreamed features as the latent prediction;
    an identity predictor does exactly that, so such checkpoints load unchanged in behaviour."""
    keys = [key for key in expected if key.startswith("latent_predictor.")]
    if not keys or any(key in found for key in keys) or not any(key.startswith("dreamer.") for key in found):
        return found
    identity = LatentPredictor().state_dict()
    return {**found, **{f"latent_predictor.{name}": value for name, value in identity.items()}}


def without_imagenet_start(model_cfg: ModelConfig) -> ModelConfig:
    """``model_cfg`` building from random weights: for a model whose saved weights replace any ImageNet start, which
    need not exist on this machine (an evaluation, a resumed run)."""
    return dataclasses.replace(model_cfg, pretrained=False, pretrained_weights=None)


def _check_state(expected: Mapping[str, torch.Tensor], found: Mapping[str, torch.Tensor], source: str) -> None:
    """Every entry of the model present, of its shape and kind of number, and finite: a weight of NaN predicts
    NaN for every image, and the evaluation's plots then fail with a traceback."""
    missing = sorted(set(expected) - set(found))
    unexpected = sorted(set(found) - set(expected))
    if missing or unexpected:
        detail = f"missing {', '.join(missing[:3])}" if missing else f"unexpected {', '.join(unexpected[:3])}"
        raise CheckpointError(f"{source}: weights do not fit the recorded model ({detail})")
    for key, tensor in expected.items():
        value = found[key]
        if tuple(value.shape) != tuple(tensor.shape):
            raise CheckpointError(f"{source}: weights do not fit the recorded model ({key} has shape "
                                  f"{tuple(value.shape)}, the model needs {tuple(tensor.shape)})")
        if value.is_complex() or value.dtype.is_floating_point != tensor.dtype.is_floating_point:
            raise CheckpointError(f"{source}: weights do not fit the recorded model ({key} holds {value.dtype}, "
                                  f"the model needs {tensor.dtype})")
        if value.dtype.is_floating_point and not torch.isfinite(value).all():
            raise CheckpointError(f"{source}: weights hold NaN or infinite values ({key}); the run diverged or the "
                                  "file was altered")
