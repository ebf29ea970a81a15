"""The task protocol, and the guidance task: what one step means, so the Trainer knows none of it.

A :class:`Task` owns the batch keys, the forward pass, the loss terms and their names, the validation metrics, the
monitored metric and the optimizer's parameter groups. The :class:`~cardiac_dreamer.training.Trainer` only loops,
accumulates, steps and saves. :class:`GuidanceTask` is the guidance world model's: batch preparation, forward,
latent target, losses, errors in mm and degrees. The trainer (training and validation), the throughput benchmark's
bare loop and the evaluator all call it, so what a step means is written once; another objective is another task
passed to the Trainer.
"""
from __future__ import annotations

import copy
from typing import Any, Dict, List, Mapping, Optional, Protocol, Sequence, Tuple

import torch
from torch import nn

from .config import Config, LossConfig, TrainingConfig
from .errors import ConfigError
from .data.transforms import PhotometricAugment, images_to_float
from .runtime.devices import FP32, Precision
from .geometry import pose_error
from .losses import compute_losses, latent_prediction
from .models.registry import can_imagine
from .names import LOSS_NAMES, MONITOR, VAL_MAE_NAMES

Batch = Dict[str, torch.Tensor]
Tensors = Dict[str, torch.Tensor]
LABEL_KEYS = ("action_change", "at1", "at2")
LATENT_READINGS = ("latent_t2_features", "latent_change")  # what a world model's imagine() gives the latent loss
LABEL_TERMS = ("main_task_loss", "aux_t2_action_loss")  # averaged over the labelled pairs only


class Task(Protocol):
    """What the :class:`~cardiac_dreamer.training.Trainer` needs of an objective; it names nothing else.

    The Trainer logs each loss term as ``train_<name>`` and ``val_<name>`` (the first, the objective, as
    ``val_loss``), and each error column's mean absolute value under its name in :attr:`error_names`.
    """

    loss_names: Sequence[str]  # the terms step() returns; the first is the objective that is backpropagated
    error_names: Sequence[str]  # validation metrics: the mean |error| of each column of errors()
    monitor: str  # the validation metric (lower is better) that ranks checkpoints, stops early, drives the LR plateau

    def prepare_batch(self, raw: Mapping[str, Any], train: bool) -> Batch:
        """A collated batch on the device, ready for :meth:`step` (augmented when ``train``)."""

    def batch_size(self, batch: Mapping[str, Any]) -> int:
        """Samples in a batch, raw or prepared: the weight of its micro-batch in an accumulated step."""

    def loss_counts(self, batch: Batch) -> torch.Tensor:
        """``[len(loss_names)]`` on the device: the samples each loss term of a prepared batch averaged over, its
        weight in the logged means (so a term averaged over a batch's labelled pairs weighs by their number)."""

    def step(self, engine: nn.Module, batch: Batch) -> Tuple[Tensors, Tensors]:
        """``(outputs, losses)`` of ``engine`` (the model or its DDP / compiled wrapper) on a prepared batch."""

    def errors(self, outputs: Tensors, batch: Batch) -> torch.Tensor:
        """Signed errors ``[B, len(error_names)]`` of a batch's outputs."""

    def batchnorm_forward(self, batch: Batch) -> None:
        """The forward pass whose BatchNorm statistics the model keeps (run without gradient)."""

    def build_optimizer(self, cfg: TrainingConfig) -> torch.optim.Optimizer:
        """The optimizer over this task's parameter groups, configured by ``training``."""

    def after_optimizer_step(self) -> None:
        """Whatever follows each optimizer step (an EMA update, say)."""

    def start_epoch(self, epoch: int) -> bool:
        """Set the objective for ``epoch``; False when the epoch's monitored metric means nothing yet (a
        pre-training epoch), so that it neither ranks checkpoints nor counts toward early stopping or the plateau."""

    def state_dict(self) -> Dict[str, Any]: ...

    def load_state_dict(self, state: Mapping[str, Any]) -> None: ...


class LatentTarget:
    """The latent loss's target encoder: an exponential moving average of the backbone, always in eval mode.

    A live backbone as its own target (in train-mode BatchNorm, with gradients cut) lets both sides drift
    together; a slowly moving copy, as in BYOL and I-JEPA, gives the dreamer a stable view of image t2 to predict.
    """

    def __init__(self, backbone: nn.Module, momentum: float):
        self.momentum = momentum
        self.encoder = copy.deepcopy(backbone).eval().requires_grad_(False)

    @torch.no_grad()
    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        return self.encoder(images)  # [B, 1, H, W] -> [B, 512, h, w]

    @torch.no_grad()
    def update(self, backbone: nn.Module) -> None:
        """Move each weight ``1 - momentum`` of the way to the backbone's; BatchNorm statistics are copied (the running
        ones: an epoch's recomputed statistics reach the target only through the next step)."""
        for target, source in zip(self.encoder.parameters(), backbone.parameters()):
            target.lerp_(source.detach(), 1.0 - self.momentum)
        for target, source in zip(self.encoder.buffers(), backbone.buffers()):
            target.copy_(source)

    def state_dict(self) -> Dict[str, torch.Tensor]:
        return self.encoder.state_dict()

    def load_state_dict(self, state: Mapping[str, torch.Tensor]) -> None:
        self.encoder.load_state_dict(state)


class GuidanceTask:
    """What one step of the guidance world model computes, for a model on a device at a precision (a :class:`Task`).

    ``augment`` (training batches only) and ``latent_target`` are optional: evaluation needs neither.
    """

    loss_names = LOSS_NAMES
    error_names = VAL_MAE_NAMES  # mm and degrees, per axis, of the image-only at1 (the deployed guidance)
    monitor = MONITOR

    def __init__(
        self,
        model: nn.Module,
        loss_cfg: LossConfig,
        device: torch.device,
        precision: Precision = FP32,
        memory_format: torch.memory_format = torch.preserve_format,
        augment: Optional[PhotometricAugment] = None,
        latent_target: Optional[LatentTarget] = None,
        pretrain_epochs: int = 0,
    ):
        self.model = model
        self.loss_cfg = loss_cfg
        self.device = device
        self.precision = precision
        self.memory_format = memory_format
        self.augment = augment
        self.latent_target = latent_target
        self.pretrain_epochs = pretrain_epochs
        self.label_free = False  # True in pre-training epochs: the latent term alone is trained

    @classmethod
    def for_training(cls, model: nn.Module, config: Config, device: torch.device, precision: Precision,
                     memory_format: torch.memory_format = torch.preserve_format) -> "GuidanceTask":
        """With photometric augmentation (``data.augment``), ``training.pretrain_epochs`` and, for a world model with
        ``lambda_latent > 0``, the EMA latent target (without that weight the latent loss is reported as 0)."""
        wants_target = can_imagine(model) and config.loss.lambda_latent > 0
        return cls(
            model, config.loss, device, precision, memory_format,
            augment=PhotometricAugment() if config.data.augment else None,
            latent_target=LatentTarget(model.backbone, config.loss.latent_target_momentum) if wants_target else None,
            pretrain_epochs=config.training.pretrain_epochs,
        )

    def prepare_batch(self, raw: Mapping[str, Any], train: bool) -> Batch:
        """Move a collated batch to the device; uint8 images become normalized floats there, batched, and the
        t1 image of a training batch is augmented (the t2 image, and the t1 image's clean copy ``image_t1_clean``,
        only feed the latent target: kept clean)."""
        batch = {key: raw[key].to(self.device, non_blocking=True) for key in LABEL_KEYS}
        if "labelled" in raw:
            batch["labelled"] = raw["labelled"].to(self.device, non_blocking=True)
        for key in ("image_t1", "image_t2"):
            images = raw[key].to(self.device, non_blocking=True)
            if images.dtype == torch.uint8:
                images = images_to_float(images)
            if train and key == "image_t1" and self.augment is not None:
                if self.latent_from_t1:
                    batch["image_t1_clean"] = images.contiguous(memory_format=self.memory_format)
                images = self.augment(images)
            batch[key] = images.contiguous(memory_format=self.memory_format)
        return batch

    @property
    def latent_from_t1(self) -> bool:
        """Whether the latent term starts from the target's view of image t1 (``loss.latent_prediction: change``)."""
        return self.latent_target is not None and self.loss_cfg.latent_prediction == "change"

    def batch_size(self, batch: Mapping[str, Any]) -> int:
        return len(batch["at1"])

    def loss_counts(self, batch: Batch) -> torch.Tensor:
        """The label terms count a batch's labelled pairs (label-scarce runs), the others every pair."""
        pairs = torch.full((), float(len(batch["at1"])), device=self.device)
        labelled = batch["labelled"].sum().float() if "labelled" in batch else pairs
        return torch.stack([labelled if name in LABEL_TERMS else pairs for name in self.loss_names])

    def forward(self, engine: nn.Module, batch: Batch) -> Dict[str, torch.Tensor]:
        """The model's outputs (poses in mm and degrees) under the task's precision; ``engine`` is the model or
        its DDP / compiled wrapper."""
        with self.autocast():
            return engine(batch["image_t1"], batch["action_change"])

    def _check_latent_readings(self, outputs: Dict[str, torch.Tensor]) -> None:
        """A variant whose ``imagine`` lacks the latent readings would train its latent term as 0 without a word."""
        missing = [key for key in LATENT_READINGS if key not in outputs]
        if missing:
            raise ConfigError(
                f"the {self.model.variant!r} variant's imagine() returns no {' or '.join(map(repr, missing))}, which "
                f"the latent loss reads (loss.lambda_latent {self.loss_cfg.lambda_latent}): return them "
                "(CardiacDreamer.imagine shows how) or set loss.lambda_latent to 0")

    def step(self, engine: nn.Module, batch: Batch) -> Tuple[Dict[str, torch.Tensor], Dict[str, torch.Tensor]]:
        """Forward, latent target and losses: ``(outputs, losses)``."""
        outputs = self.forward(engine, batch)
        target = None
        if self.latent_target is not None:
            self._check_latent_readings(outputs)
            with self.autocast():
                target = self.latent_target(batch["image_t2"])
                target_t1 = (self.latent_target(batch.get("image_t1_clean", batch["image_t1"]))
                             if self.latent_from_t1 else None)
            outputs = {**outputs, "latent_t2_pred": latent_prediction(outputs, target_t1)}
        losses = compute_losses(outputs, batch, self.model.pose_std, self.loss_cfg, target, self.label_free)
        return outputs, losses

    def errors(self, outputs: Tensors, batch: Batch) -> torch.Tensor:
        """Signed errors of the predicted at1 ``[B, 6]`` in mm and degrees (angles on the circle)."""
        return pose_error(batch["at1"].double(), outputs["at1"].double())

    def batchnorm_forward(self, batch: Batch) -> None:
        with self.autocast():
            self.model(batch["image_t1"])  # the image path alone: the dreamer holds no BatchNorm

    def parameter_groups(self) -> List[Dict[str, Any]]:
        """One group: every trainable parameter, in the model's order (the order saved optimizer states follow)."""
        return [{"params": [p for p in self.model.parameters() if p.requires_grad]}]

    def build_optimizer(self, cfg: TrainingConfig) -> torch.optim.Optimizer:
        return torch.optim.AdamW(self.parameter_groups(), lr=cfg.lr, weight_decay=cfg.weight_decay,
                                 fused=self.device.type == "cuda" or None)

    def after_optimizer_step(self) -> None:
        if self.latent_target is not None:
            self.latent_target.update(self.model.backbone)

    def start_epoch(self, epoch: int) -> bool:
        """Epochs before ``pretrain_epochs`` are self-supervised pre-training: no label is read, the head is
        untrained, so their validation loss ranks nothing."""
        self.label_free = epoch < self.pretrain_epochs
        return not self.label_free

    def autocast(self):
        return self.precision.autocast(self.device)

    def state_dict(self) -> Dict[str, Any]:
        return {"latent_target": self.latent_target.state_dict()} if self.latent_target is not None else {}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        if self.latent_target is not None and "latent_target" in state:
            self.latent_target.load_state_dict(state["latent_target"])
