"""The training objective: SmoothL1 on standardized poses at t1 (the task) and t2, and on the imagined features.

All terms are computed in float32 whatever the autocast precision, so bf16/fp16 training does not round the loss.
"""
from __future__ import annotations

from typing import Dict, Mapping

import torch
import torch.nn.functional as F

from .config import LossConfig


def compute_losses(
    outputs: Mapping[str, torch.Tensor], batch: Mapping[str, torch.Tensor], cfg: LossConfig
) -> Dict[str, torch.Tensor]:
    """Scalar losses ``main_task_loss``, ``aux_t2_action_loss``, ``latent_loss`` and their weighted ``total_loss``.

    Terms a model does not produce (the ``"direct"`` variant has no at2 and no imagined features) are zero. With
    ``cfg.primary_task_only`` the total is the main term alone; the others are still reported, detached.
    """
    main = _smooth_l1(outputs["at1"], batch["at1"], cfg.smooth_l1_beta)
    zero = main.new_zeros(())
    aux = _smooth_l1(outputs["at2"], batch["at2"], cfg.smooth_l1_beta) if "at2" in outputs else zero
    latent = zero
    if "features_t2_pred" in outputs:
        if "features_t2" not in outputs:
            raise ValueError("outputs hold features_t2_pred but no features_t2 target: call the model with image_t2")
        # The target is the backbone's own view of t2; no gradient may flow into it (that would collapse both maps).
        latent = _smooth_l1(outputs["features_t2_pred"], outputs["features_t2"].detach(), cfg.smooth_l1_beta)
    if cfg.primary_task_only:
        aux, latent = aux.detach(), latent.detach()
        total = main
    else:
        total = main + cfg.lambda_t2_action * aux + cfg.lambda_latent * latent
    return {"main_task_loss": main, "aux_t2_action_loss": aux, "latent_loss": latent, "total_loss": total}


def _smooth_l1(prediction: torch.Tensor, target: torch.Tensor, beta: float) -> torch.Tensor:
    return F.smooth_l1_loss(prediction.float(), target.float(), beta=beta)
