"""Early stopping and learning-rate schedules, each with a state that survives a resume."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Dict, Optional

import torch

from ..config import STEP_SCHEDULERS, TrainingConfig
from ..errors import ConfigError


@dataclass
class EarlyStopping:
    """Stop when the monitored metric has not improved by ``min_delta`` for ``patience`` epochs.

    A non-finite value never counts as an improvement. ``patience`` 0 disables stopping.
    """

    patience: int
    min_delta: float = 0.0
    best: float = math.inf
    wait: int = 0

    def update(self, value: float) -> bool:
        """Record one epoch's value; True when training should stop."""
        if math.isfinite(value) and value < self.best - self.min_delta:
            self.best, self.wait = value, 0
        else:
            self.wait += 1
        return self.stopped

    @property
    def stopped(self) -> bool:
        """True once ``patience`` epochs passed without improvement: a run resumed in this state trains no more."""
        return self.patience > 0 and self.wait >= self.patience

    def state_dict(self) -> Dict[str, Any]:
        return {"best": self.best, "wait": self.wait}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        self.best, self.wait = float(state["best"]), int(state["wait"])


class LRSchedule:
    """One scheduler behind two hooks: ``after_optimizer_step`` and ``after_validation``.

    ``cosine`` (linear warmup, then cosine to ``min_lr``) and ``onecycle`` are functions of the optimizer step;
    ``plateau`` halves the rate when the monitored metric stalls; ``none`` keeps it constant.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, cfg: TrainingConfig, steps_per_epoch: int):
        self.kind = cfg.scheduler
        total_steps = max(1, cfg.max_epochs * steps_per_epoch)
        self.scheduler: Optional[Any] = None
        if self.kind == "plateau":
            self.scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
                optimizer, mode="min", factor=cfg.plateau_factor, patience=cfg.plateau_patience, min_lr=cfg.min_lr
            )
        elif self.kind == "cosine":
            warmup = min(cfg.warmup_epochs * steps_per_epoch, total_steps - 1)
            floor = cfg.min_lr / cfg.lr

            def factor(step: int) -> float:
                if step < warmup:
                    return (step + 1) / (warmup + 1)
                progress = min(1.0, (step - warmup) / max(1, total_steps - warmup))
                return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))

            self.scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
        elif self.kind == "onecycle":
            # stepped after each of the run's optimizer steps, so its last rate (the cycle's floor) is the last used
            self.scheduler = torch.optim.lr_scheduler.OneCycleLR(
                optimizer, max_lr=cfg.lr, total_steps=total_steps, pct_start=0.3
            )

    def after_optimizer_step(self) -> None:
        if self.kind in STEP_SCHEDULERS:
            self.scheduler.step()

    def after_validation(self, score: float) -> None:
        """Feed the plateau schedule the epoch's monitored metric (NaN is no evidence of a stall)."""
        if self.kind == "plateau" and math.isfinite(score):
            self.scheduler.step(score)

    def state_dict(self) -> Dict[str, Any]:
        return self.scheduler.state_dict() if self.scheduler is not None else {}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        if self.scheduler is None or not state:
            return
        # a one-cycle run saved before its plan was fixed counts one step more: it goes on with that plan
        if self.kind == "onecycle" and state.get("total_steps") - self.scheduler.total_steps not in (0, 1):
            raise ConfigError("training.scheduler onecycle is planned for the run's length and cannot be extended "
                              "on resume; keep max_epochs, or use cosine or plateau")
        self.scheduler.load_state_dict(state)
        if self.kind == "cosine":  # the optimizer holds the rate of the old plan's step; a longer run has its own
            step = self.scheduler.last_epoch
            rates = [base * factor(step) for base, factor in zip(self.scheduler.base_lrs, self.scheduler.lr_lambdas)]
            for group, rate in zip(self.scheduler.optimizer.param_groups, rates):
                group["lr"] = rate
