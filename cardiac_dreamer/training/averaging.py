"""Checkpoint averaging: the deployed model as the mean of the top-k checkpoints' weights.

On a few patients the validation loss jumps from epoch to epoch, so the single best epoch is a noisy pick (on the
demo, two seeds of three chose epoch 1). The mean of the top-k weights (as in checkpoint averaging for translation
models and stochastic weight averaging) averages that noise away; measured in docs/objective.md.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Sequence

import torch

from ..io.checkpoint import ModelCheckpoint, load_checkpoint


def average_checkpoints(paths: Sequence[Path]) -> ModelCheckpoint:
    """The first checkpoint (the best-ranked) with every floating-point weight and statistic replaced by its mean
    over ``paths``; counters (BatchNorm's ``num_batches_tracked``) and the latent target encoder are the first's.
    ``metrics`` holds only ``averaged_epochs``: the epochs' validation figures do not describe the mean."""
    checkpoints = [load_checkpoint(path) for path in paths]
    first = checkpoints[0]
    state = {}
    for name, tensor in first.model_state.items():
        if tensor.is_floating_point():
            total = sum(checkpoint.model_state[name].to(torch.float64) for checkpoint in checkpoints)
            state[name] = (total / len(checkpoints)).to(tensor.dtype)
        else:
            state[name] = tensor
    epochs = [checkpoint.epoch for checkpoint in checkpoints]
    return dataclasses.replace(first, model_state=state, metrics={"averaged_epochs": epochs})
