"""One optimizer step under any precision: scale -> backward, then unscale -> clip -> step -> update.

The loop calls one thing and fp32 takes the same path with the scaler disabled.
"""
from __future__ import annotations

import math
from typing import Iterable, Optional

import torch

from ..runtime.devices import Precision


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
