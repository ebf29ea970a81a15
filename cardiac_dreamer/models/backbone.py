"""ResNet34 feature extractor for 1-channel ultrasound frames, with optional local ImageNet weights and freezing.

Weights are never downloaded: clinical machines are often offline, and a silent download would make a run depend on
the network. They come from an explicit state-dict file or from the torch hub cache, where torchvision keeps them.
"""
from __future__ import annotations

import logging
import pickle
from collections import OrderedDict
from pathlib import Path
from typing import List, Mapping, Optional, Union

import torch
from torch import nn
from torchvision.models import resnet34

from ..errors import ConfigError

log = logging.getLogger(__name__)

FEATURE_CHANNELS = 512
STRIDE = 32
# The file torchvision's ResNet34_Weights.IMAGENET1K_V1 downloads into <torch hub>/checkpoints/.
HUB_FILE_PATTERN = "resnet34-*.pth"
# Freezing groups in network order: 1 = stem, 2..5 = layer1..layer4.
_FREEZE_GROUPS = (("conv1", "bn1"), ("layer1",), ("layer2",), ("layer3",), ("layer4",))


class Backbone(nn.Sequential):
    """The ResNet34 trunk: ``[B, 1, H, W] -> [B, 512, H/32, W/32]``.

    Module names match torchvision's (``conv1``, ``bn1``, ``layer1``...), so its state dicts load directly.
    Batch norms of frozen stages stay in eval mode: their running statistics are part of what was frozen.
    """

    def __init__(self, frozen: List[nn.Module]) -> None:
        trunk = resnet34(weights=None)
        trunk.conv1 = nn.Conv2d(1, 64, kernel_size=7, stride=2, padding=3, bias=False)
        names = ("conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4")
        super().__init__(OrderedDict((name, getattr(trunk, name)) for name in names))
        self._frozen = frozen

    def train(self, mode: bool = True) -> "Backbone":
        super().train(mode)
        for module in self._frozen:
            module.eval()
        return self


def build_backbone(
    pretrained: bool = False,
    weights_path: Optional[Union[str, Path]] = None,
    freeze_layers: int = 0,
) -> Backbone:
    """A ResNet34 trunk; ImageNet weights from ``weights_path`` or the hub cache when ``pretrained``.

    A ``weights_path`` implies ``pretrained``: a file named by the user is never silently ignored.

    ``freeze_layers`` (0-5) stops gradients through the stem and the first ``freeze_layers - 1`` residual stages.
    """
    if not 0 <= freeze_layers <= len(_FREEZE_GROUPS):
        raise ConfigError(f"model.freeze_backbone_layers must be 0-{len(_FREEZE_GROUPS)}, got {freeze_layers}")
    frozen: List[nn.Module] = []
    backbone = Backbone(frozen)
    if pretrained or weights_path is not None:
        path = Path(weights_path) if weights_path is not None else find_cached_weights()
        load_imagenet_weights(backbone, path)
    for group in _FREEZE_GROUPS[:freeze_layers]:
        for name in group:
            module = getattr(backbone, name)
            module.requires_grad_(False)
            frozen.extend(m for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm))
    return backbone.train()


def find_cached_weights() -> Path:
    """The torchvision ResNet34 ImageNet file in the torch hub cache; ConfigError saying how to provide it."""
    directory = Path(torch.hub.get_dir()) / "checkpoints"
    candidates = sorted(directory.glob(HUB_FILE_PATTERN))
    if not candidates:
        raise ConfigError(
            f"pretrained backbone requested but no {HUB_FILE_PATTERN} in {directory}: set model.pretrained_weights "
            "to a torchvision resnet34 state-dict file, copy one there, or set model.pretrained to false"
        )
    return candidates[-1]


def load_imagenet_weights(backbone: Backbone, path: Path) -> None:
    """Load a torchvision resnet34 state dict; the RGB first-conv kernels are averaged into one grey channel."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, pickle.UnpicklingError, EOFError) as error:
        raise ConfigError(f"{path}: cannot read backbone weights ({_first_line(error)})") from None
    if not isinstance(state, Mapping) or "conv1.weight" not in state:
        raise ConfigError(f"{path}: not a torchvision resnet34 state dict (no conv1.weight)")
    state = {key: value for key, value in state.items() if not key.startswith("fc.")}
    state["conv1.weight"] = state["conv1.weight"].mean(dim=1, keepdim=True)  # [64, 3, 7, 7] -> [64, 1, 7, 7]
    try:
        backbone.load_state_dict(state)
    except RuntimeError as error:
        raise ConfigError(f"{path}: not a torchvision resnet34 state dict ({_first_line(error)})") from None
    log.info("loaded ImageNet backbone weights from %s", path)


def _first_line(error: Exception, limit: int = 300) -> str:
    """The error's message on one line (state-dict errors span many), cut to ``limit`` characters."""
    text = " ".join(str(error).split()) or type(error).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."
