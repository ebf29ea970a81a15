"""ResNet feature extractor (18 or 34 layers) for 1-channel ultrasound frames, with ImageNet weights and freezing.

ImageNet weights come the way the ecosystem gets them: torchvision's weights API (``ResNet34_Weights.IMAGENET1K_V1``)
reads them from the torch hub cache (``$TORCH_HOME/hub/checkpoints``) and downloads them into it when the machine is
online; offline, a run fails in one line naming ``model.pretrained_weights`` (a local file) and
``model.pretrained: false``. Every entry of a weights file is checked (a tensor, the shape and kind of number the
network expects, finite) before any is used, so a file that is not what it claims fails naming its first bad entry.
"""
from __future__ import annotations

import contextlib
import logging
import os
import pickle
import reprlib
import socket
from collections import OrderedDict
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Union
from urllib.parse import urlparse

import torch
from torch import nn

from ..config import BACKBONES, check_choice
from ..errors import ConfigError, error_text
from ..io.checkpoint import unpickler_complaint
from ..io.fileio import require_regular_file

log = logging.getLogger(__name__)

FEATURE_CHANNELS = 512  # both depths end in 512 channels (basic blocks)
STRIDE = 32
DEFAULT_BACKBONE = "resnet34"  # the guide's; checkpoints written before model.backbone existed are this
DOWNLOAD_TIMEOUT_S = 30  # per network operation: a machine whose packets vanish fails in seconds, not minutes
# Freezing groups in network order: 1 = stem, 2..5 = layer1..layer4.
_FREEZE_GROUPS = (("conv1", "bn1"), ("layer1",), ("layer2",), ("layer3",), ("layer4",))


def _torchvision(name: str) -> Any:
    """``(builder, ImageNet weights)`` of torchvision for the backbone ``name``.

    Imported here, not with this module: torchvision imports ``torch._dynamo`` (about 2 s on 2 cores), which a
    command that refuses a bad config or bad data before building any model should not make its user wait for.
    """
    from torchvision import models

    return {"resnet18": (models.resnet18, models.ResNet18_Weights.IMAGENET1K_V1),
            "resnet34": (models.resnet34, models.ResNet34_Weights.IMAGENET1K_V1)}[name]


class Backbone(nn.Sequential):
    """The ResNet trunk: ``[B, 1, H, W] -> [B, 512, H/32, W/32]``.

    Module names match torchvision's (``conv1``, ``bn1``, ``layer1``...), so its state dicts load directly.
    Batch norms of frozen stages stay in eval mode: their running statistics are part of what was frozen.
    """

    def __init__(self, frozen: List[nn.Module], name: str = DEFAULT_BACKBONE) -> None:
        trunk = _torchvision(name)[0](weights=None)
        trunk.conv1 = nn.Conv2d(1, 64, kernel_size=7, stride=2, padding=3, bias=False)
        names = ("conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4")
        super().__init__(OrderedDict((part, getattr(trunk, part)) for part in names))
        self.name = name
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
    name: str = DEFAULT_BACKBONE,
) -> Backbone:
    """A ResNet trunk of ``name`` (resnet18, resnet34); ImageNet weights from ``weights_path``, else through
    torchvision's weights API (hub cache, then download) when ``pretrained``.

    A ``weights_path`` implies ``pretrained``: a file named by the user is never silently ignored.

    ``freeze_layers`` (0-5) stops gradients through the stem and the first ``freeze_layers - 1`` residual stages.
    """
    check_choice("model.backbone", name, BACKBONES)
    if not 0 <= freeze_layers <= len(_FREEZE_GROUPS):
        raise ConfigError(f"model.freeze_backbone_layers must be 0-{len(_FREEZE_GROUPS)}, got {freeze_layers}")
    frozen: List[nn.Module] = []
    backbone = Backbone(frozen, name)
    if weights_path is not None:
        load_imagenet_weights(backbone, Path(weights_path), read_weights_file(Path(weights_path)))
    elif pretrained:
        load_imagenet_weights(backbone, hub_file(name), imagenet_state(name))
    for group in _FREEZE_GROUPS[:freeze_layers]:
        for module_name in group:
            module = getattr(backbone, module_name)
            module.requires_grad_(False)
            frozen.extend(m for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm))
    return backbone.train()


def hub_file(name: str) -> Path:
    """Where torchvision keeps ``name``'s ImageNet weights: ``<torch hub dir>/checkpoints/<file of the URL>``."""
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(urlparse(_torchvision(name)[1].url).path)


def imagenet_state(name: str) -> Any:
    """``name``'s ImageNet state dict through torchvision's weights API: the hub cache, or a download into it."""
    cached = hub_file(name)
    try:
        with _network_timeout(DOWNLOAD_TIMEOUT_S):
            return _torchvision(name)[1].get_state_dict(progress=False, check_hash=True, map_location="cpu",
                                                     weights_only=True)
    except OSError as error:  # urllib's URLError, a timeout, a refused connection, a full cache disk
        if cached.exists():
            raise ConfigError(f"{cached}: cannot read the ImageNet {name} weights ({error_text(error)}); delete "
                              "it to download it again") from None
        raise ConfigError(
            f"model.pretrained: the ImageNet {name} weights are not in the torch hub cache ({cached}) and cannot "
            f"be downloaded ({_reason(error)}); set model.pretrained_weights to a torchvision {name} state-dict "
            "file, or model.pretrained: false"
        ) from None
    except Exception as error:  # a damaged or foreign cache file: torch.load's unpickler raises all kinds
        raise ConfigError(f"{cached}: cannot read the ImageNet {name} weights ({error_text(error)}); delete it "
                          "to download it again") from None


def read_weights_file(path: Path) -> Any:
    """What the torch file ``path`` holds, loaded without executing code (``weights_only``)."""
    require_regular_file(Path(path), "backbone weights file", ConfigError)
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        raise ConfigError(f"{path}: refused to read backbone weights: the file holds pickled Python objects, not "
                          f"plain tensors ({unpickler_complaint(error)}); nothing in it was run") from None
    except Exception as error:  # torch.load's unpickler raises all kinds on a damaged file (IndexError, EOFError...)
        raise ConfigError(f"{path}: cannot read backbone weights ({error_text(error)})") from None


def load_imagenet_weights(backbone: Backbone, path: Path, state: Any) -> None:
    """Load a torchvision ResNet state dict read from ``path``, every entry checked first; the RGB first-conv
    kernels are averaged into one grey channel."""
    state = checked_state(state, backbone.state_dict(), path, backbone.name)
    state["conv1.weight"] = state["conv1.weight"].mean(dim=1, keepdim=True)  # [64, C, 7, 7] -> [64, 1, 7, 7]
    backbone.load_state_dict(state)
    log.info("loaded ImageNet %s weights from %s", backbone.name, path)


def checked_state(state: Any, expected: Mapping[str, torch.Tensor], path: Path, name: str) -> Dict[str, torch.Tensor]:
    """``state`` without the classifier (``fc.*``), once every entry is a finite tensor of the shape and kind of
    number (floating or integer) ``expected`` holds; ConfigError naming ``path`` and the first bad entry otherwise.
    The stem's kernels may have any number of input channels (3 for RGB): they are averaged into one."""
    what = f"a torchvision {name} state dict"
    if not isinstance(state, Mapping):
        raise ConfigError(f"{path}: not {what} (it holds a {type(state).__name__}, not a dict of tensors)")
    kept = {}
    for key, value in state.items():
        if isinstance(key, str) and key.startswith("fc."):
            continue
        entry = f"{path}: entry {reprlib.repr(key)}"
        if key not in expected:
            raise ConfigError(f"{entry} is not part of {what} (model.backbone is {name})")
        if not isinstance(value, torch.Tensor):
            raise ConfigError(f"{entry} is a {type(value).__name__}, not a tensor")
        want = expected[key]
        shape_ok = (value.dim() == 4 and value.shape[0] == want.shape[0] and value.shape[1] >= 1
                    and value.shape[2:] == want.shape[2:]) if key == "conv1.weight" else value.shape == want.shape
        if not shape_ok:
            raise ConfigError(f"{entry} has shape {list(value.shape)}; {what} has {list(want.shape)}")
        if value.dtype.is_floating_point != want.dtype.is_floating_point or value.is_complex():
            raise ConfigError(f"{entry} holds {value.dtype}; {what} holds {want.dtype}")
        if value.dtype.is_floating_point and not torch.isfinite(value).all():
            raise ConfigError(f"{entry} holds NaN or infinite values")
        kept[key] = value
    # torchvision's ImageNet files predate BatchNorm's batch counter (num_batches_tracked): BatchNorm starts it at 0
    missing = next((key for key in expected if key not in kept and not key.endswith(".num_batches_tracked")), None)
    if missing is not None:
        raise ConfigError(f"{path}: entry {missing!r} is missing; not {what} (model.backbone is {name})")
    return kept


@contextlib.contextmanager
def _network_timeout(seconds: float):
    """Bound each socket operation of a download (urllib waits forever by default)."""
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(seconds)
    try:
        yield
    finally:
        socket.setdefaulttimeout(previous)


def _reason(error: OSError) -> str:
    """The network's words for a failed download (``Name or service not known``), without urllib's wrapping."""
    inner = getattr(error, "reason", error)
    return getattr(inner, "strerror", None) or error_text(inner if isinstance(inner, BaseException) else error)

