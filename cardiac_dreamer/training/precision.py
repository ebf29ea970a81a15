"""Device choice and mixed precision: what the user asked for, mapped onto what the hardware can do.

One :class:`GradientStep` does scale -> backward, then unscale -> clip -> step -> update, so the loop calls one
thing and fp32 takes the same path with the scaler disabled.
"""
from __future__ import annotations

import contextlib
import logging
import math
from dataclasses import dataclass
from typing import Iterable, Optional, Union

import torch

from ..errors import ConfigError

log = logging.getLogger(__name__)


def select_device(requested: Union[str, torch.device] = "auto") -> torch.device:
    """``auto`` picks cuda, then mps, then cpu; any other spelling must name a device this machine has."""
    if requested == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(requested)
    except (RuntimeError, ValueError) as error:
        raise ConfigError(f"device {requested!r} is not a torch device ({error})") from None
    if device.type == "cuda" and (device.index or 0) >= torch.cuda.device_count():
        raise ConfigError(
            f"device {requested!r} is not available: this machine has {torch.cuda.device_count()} CUDA device(s)"
        )
    if device.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ConfigError(f"device {requested!r} is not available on this machine")
    return device


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


def resolve_precision(requested: str, device: torch.device) -> Precision:
    """Map "32" / "16" / "bf16" onto the device; never crash, say in one line when the request is changed."""
    if requested == "32":
        return Precision("32", None, False)
    if device.type == "cuda":
        if requested == "bf16" and not torch.cuda.is_bf16_supported():
            log.warning("precision bf16 is not supported by this GPU; using fp16 with loss scaling")
            requested = "16"
        return Precision(requested, torch.float16 if requested == "16" else torch.bfloat16, requested == "16")
    if device.type == "cpu" and cpu_supports_bf16():
        if requested == "16":
            log.warning("precision 16 on CPU: using bf16 autocast (this CPU has native bf16), no loss scaling")
        return Precision("bf16", torch.bfloat16, False)
    log.warning("precision %s is not supported on %s; training in fp32", requested, device.type)
    return Precision("32", None, False)


class GradientStep:
    """Backward with optional loss scaling, then unscale, clip by norm, and step; skips non-finite gradients."""

    def __init__(self, precision: Precision, device: torch.device, clip_norm: Optional[float]):
        self.scaler = torch.amp.GradScaler(device.type, enabled=precision.use_scaler)
        self.clip_norm = clip_norm or None

    def backward(self, loss: torch.Tensor) -> None:
        self.scaler.scale(loss).backward()

    def step(self, optimizer: torch.optim.Optimizer, parameters: Iterable[torch.nn.Parameter]) -> torch.Tensor:
        """Apply the accumulated gradients; returns the gradient norm (inf or nan when the step was skipped)."""
        self.scaler.unscale_(optimizer)
        params = [p for p in parameters if p.grad is not None]
        max_norm = self.clip_norm if self.clip_norm is not None else math.inf
        grad_norm = torch.nn.utils.clip_grad_norm_(params, max_norm)
        if self.scaler.is_enabled():
            self.scaler.step(optimizer)  # skips the step itself when it finds inf/nan
        elif getattr(optimizer, "_step_supports_amp_scaling", False):
            # Fused optimizers (AdamW on CUDA) skip on the device when told found_inf: no host sync here.
            optimizer.found_inf = (~torch.isfinite(grad_norm)).float()
            optimizer.step()
        elif torch.isfinite(grad_norm):  # one host sync per optimizer step, not per micro-batch
            optimizer.step()
        self.scaler.update()
        optimizer.zero_grad(set_to_none=True)
        return grad_norm

    def state_dict(self):
        return self.scaler.state_dict()

    def load_state_dict(self, state) -> None:
        if state:
            self.scaler.load_state_dict(state)
