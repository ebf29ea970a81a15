"""The training objective: four SmoothL1 terms whose names say what they measure.

Pose errors are divided by the training standard deviation of each axis (millimetres and degrees would otherwise
weigh by their units), then SmoothL1 is averaged over the axes and the samples:

* ``main_task_loss``: the image-only at1 (``head(backbone(image_t1))``) vs the at1 label — the guidance a
  sonographer gets from the current frame, and what checkpoints are selected on;
* ``aux_t2_action_loss``: at2 predicted from the dreamed t2 features vs the at2 label — the world model must turn
  the move into the pose change it causes;
* ``consistency_loss``: at2 with the move undone (``at1_composed``) vs the image-only at1 (detached) — no label
  needed, so motion-only pairs of unlabelled patients train the world model too;
* ``latent_loss``: the world model's prediction of the t2 latent (``latent_t2_pred``) vs an EMA target encoder's
  view of image t2, both layer-normalized over the channels, so shrinking every feature cannot lower it (the
  collapse path of raw ReLU targets).

Label terms average over the labelled samples of a batch only (``batch["labelled"]``, for label-scarce runs).
All terms are computed in float32 whatever the autocast precision.
"""
from __future__ import annotations

from typing import Dict, Mapping, Optional

import torch
import torch.nn.functional as F

from .config import LossConfig
from .geometry import pose_error

LAYER_NORM_EPS = 1e-10


def per_sample_pose_loss(prediction: torch.Tensor, target: torch.Tensor, pose_std: torch.Tensor,
                         beta: float) -> torch.Tensor:
    """SmoothL1 of the per-axis errors in units of the training std, averaged over the six axes: ``[B]``. Angle
    errors are folded into [-180, 180) deg, as the metrics fold them: 181 and -179 deg are the same pose."""
    error = pose_error(target.float(), prediction.float()) / pose_std.float()  # [B, 6]
    return F.smooth_l1_loss(error, torch.zeros_like(error), beta=beta, reduction="none").mean(-1)


def pose_loss(prediction: torch.Tensor, target: torch.Tensor, pose_std: torch.Tensor, beta: float,
              mask: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Mean of :func:`per_sample_pose_loss` over the samples ``mask`` selects (all when None); 0 when none."""
    losses = per_sample_pose_loss(prediction, target, pose_std, beta)
    if mask is None:
        return losses.mean()
    weights = mask.to(losses.dtype)
    return (losses * weights).sum() / weights.sum().clamp_min(1.0)


def latent_loss(predicted: torch.Tensor, target: torch.Tensor, beta: float) -> torch.Tensor:
    """SmoothL1 between feature maps ``[B, C, h, w]`` layer-normalized over the channels at each position.

    Normalizing both sides makes the loss blind to the features' scale: predicting a shrunken map, or shrinking
    the backbone's features altogether, earns nothing. The target never receives gradient.
    """
    return F.smooth_l1_loss(_channel_layer_norm(predicted), _channel_layer_norm(target.detach()), beta=beta)


def latent_prediction(outputs: Mapping[str, torch.Tensor], target_t1: Optional[torch.Tensor]) -> torch.Tensor:
    """What the latent term compares with the target's view of image t2 (``loss.latent_prediction``).

    Given the target encoder's own view of image t1 ("change"), that view plus what the dreamer changed, so a
    dreamer that changes nothing predicts "nothing changes" in the target's own space; without it ("features"), the
    latent predictor's reading of the dreamed t2 features.
    """
    if target_t1 is None:
        return outputs["latent_t2_features"]
    return target_t1 + outputs["latent_change"]


def _channel_layer_norm(features: torch.Tensor) -> torch.Tensor:
    positions_last = features.float().flatten(2).transpose(1, 2)  # [B, C, h, w] -> [B, h*w, C]
    # A tiny epsilon: the usual 1e-5 is a floor under the variance that features shrunk 100x would fall toward,
    # and shrinking would again lower the loss.
    return F.layer_norm(positions_last, positions_last.shape[-1:], eps=LAYER_NORM_EPS)


def compute_losses(
    outputs: Mapping[str, torch.Tensor],
    batch: Mapping[str, torch.Tensor],
    pose_std: torch.Tensor,
    cfg: LossConfig,
    target_features: Optional[torch.Tensor] = None,
    label_free: bool = False,
) -> Dict[str, torch.Tensor]:
    """``total_loss`` and the four terms (the names of :data:`~cardiac_dreamer.names.LOSS_NAMES`) as scalars.

    ``outputs`` are the model's (poses in mm and degrees), ``batch`` holds the labels ``at1``, ``at2`` and
    optionally the boolean ``labelled`` mask; ``target_features`` is the latent target for ``latent_t2_pred`` (the
    prediction :func:`latent_prediction` makes, which the task adds to the outputs).
    Terms a model or call does not produce (the ``"direct"`` variant has no dreamer; no target given) are zero. With
    ``cfg.primary_task_only`` the total is the main term alone, with ``label_free`` (self-supervised pre-training)
    the latent term alone; the others are still reported, detached.
    """
    beta, labelled = cfg.smooth_l1_beta, batch.get("labelled")
    main = pose_loss(outputs["at1"], batch["at1"], pose_std, beta, labelled)
    zero = main.new_zeros(())
    aux = consistency = latent = zero
    if "at2" in outputs:
        aux = pose_loss(outputs["at2"], batch["at2"], pose_std, beta, labelled)
        consistency = pose_loss(outputs["at1_composed"], outputs["at1"].detach(), pose_std, beta)
    if target_features is not None:
        latent = latent_loss(outputs["latent_t2_pred"], target_features, beta)
    terms = {"main_task_loss": main, "aux_t2_action_loss": aux, "consistency_loss": consistency,
             "latent_loss": latent}
    trained = "latent_loss" if label_free else "main_task_loss" if cfg.primary_task_only else None
    if trained is None:
        total = (main + cfg.lambda_t2_action * aux + cfg.lambda_consistency * consistency
                 + cfg.lambda_latent * latent)
    else:
        total = terms[trained]
        terms = {name: value if name == trained else value.detach() for name, value in terms.items()}
    return {"total_loss": total, **terms}
