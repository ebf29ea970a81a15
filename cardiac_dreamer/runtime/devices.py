"""Device choice and mixed precision: what the user asked for, mapped onto what the hardware can do.

Training, evaluation and inference all resolve devices and precisions here, so they agree on what "auto" and "16"
mean on a given machine.
"""
from __future__ import annotations

import contextlib
import logging
import platform
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Union

import torch

from ..errors import ConfigError
from ..version import __version__

log = logging.getLogger(__name__)


def select_device(requested: Union[str, torch.device] = "auto") -> torch.device:
    """``auto`` picks cuda, then mps, then cpu; any other spelling must name a device that can run the model here.

    torch accepts many device strings that cannot train (``meta`` holds no data, ``xpu`` or ``cuda:7`` may not
    exist): those are refused in one line listing what this machine offers, before anything is built.
    """
    if isinstance(requested, bool) or not isinstance(requested, (str, torch.device, int)):
        raise ConfigError(f"device must be a name such as 'auto', 'cpu' or 'cuda:1', or a torch.device; got "
                          f"{requested!r}; this machine offers: {', '.join(available_devices())}")
    if requested == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if _mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(requested)
    except (RuntimeError, ValueError, TypeError) as error:
        raise ConfigError(f"device {str(requested)!r} is not a torch device ({error}); this machine offers: "
                          f"{', '.join(available_devices())}") from None
    index = device.index or 0
    runnable = (device.type == "cpu" or (device.type == "cuda" and index < torch.cuda.device_count())
                or (device.type == "mps" and index == 0 and _mps_available()))
    if not runnable:
        raise ConfigError(f"device {str(requested)!r} cannot run the model on this machine; it offers: "
                          f"{', '.join(available_devices())}")
    return device


def available_devices() -> List[str]:
    """The device strings that can run the model here, ``auto`` first."""
    cuda = [f"cuda:{index}" for index in range(torch.cuda.device_count())]
    return ["auto", "cpu", *(["cuda", *cuda] if cuda else []), *(["mps"] if _mps_available() else [])]


def _mps_available() -> bool:
    return getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()


def cpu_supports_bf16() -> bool:
    """True where the CPU has native bf16 matrix instructions (AVX-512 BF16 or AMX), so autocast speeds it up."""
    for probe in ("_is_amx_tile_supported", "_is_avx512_bf16_supported"):
        check = getattr(torch.cpu, probe, None)
        if check is not None and check():
            return True
    return False


@dataclass(frozen=True)
class Precision:
    """The resolved choice: the autocast dtype (None = fp32) and whether a GradScaler is needed (fp16 only)."""

    name: str  # "32", "16" or "bf16", as actually used
    autocast_dtype: Optional[torch.dtype]
    use_scaler: bool

    def autocast(self, device: torch.device):
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=device.type, dtype=self.autocast_dtype)


FP32 = Precision("32", None, False)


def resolve_precision(requested: str, device: torch.device) -> Precision:
    """Map "32" / "16" / "bf16" onto the device; never crash, say in one line when the request is changed."""
    if requested == "32":
        return FP32
    if device.type == "cuda":
        if requested == "bf16" and not torch.cuda.is_bf16_supported():
            log.warning("precision bf16 is not supported by this GPU; using fp16 with loss scaling")
            requested = "16"
        return Precision(requested, torch.float16 if requested == "16" else torch.bfloat16, requested == "16")
    if device.type == "cpu" and cpu_supports_bf16():
        if requested == "16":
            log.info("precision 16 on CPU: using bf16 autocast (this CPU has native bf16), no loss scaling")
        return Precision("bf16", torch.bfloat16, False)
    if device.type == "cpu":  # "16" means the fastest mixed precision the device has: here that is fp32
        log.log(logging.INFO if requested == "16" else logging.WARNING, "precision %s on this CPU: fp32 (it has no "
                "native bf16 instructions, AVX-512 BF16 or AMX, without which bf16 runs slower)", requested)
    else:
        log.warning("precision %s is not supported on %s; using fp32", requested, device.type)
    return FP32


def environment_info(device: torch.device) -> Dict[str, Any]:
    """The versions, platform, device and thread count a run records beside its config."""
    return {
        "cardiac_dreamer": __version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "platform": platform.platform(),
        "device": str(device),
        "cuda_device": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
        "threads": torch.get_num_threads(),
    }
