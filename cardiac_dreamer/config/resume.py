"""What a resumed run may not change: the keys its first epoch fixed."""
from __future__ import annotations

from typing import Any, List, Tuple

from .layering import Config
from .sections import STEP_SCHEDULERS


# What the weights are: the model's shape and what it reads.
ARCHITECTURE_KEYS = (("model", "variant"), ("model", "backbone"), ("model", "token_type"), ("model", "d_model"),
                     ("model", "num_heads"), ("model", "num_layers"), ("model", "dim_feedforward"),
                     ("model", "sequence_frames"), ("data", "image_size"))


# What a run is from its first epoch: its architecture, and the settings whose state a resume restores from the
# checkpoint over the config (the optimizer's rate, decay and parameter groups, the schedule, the seed, the patients'
# split and subset), so that a change there would be recorded but never applied.
RUN_KEYS = ARCHITECTURE_KEYS + (
    ("model", "freeze_backbone_layers"), ("training", "lr"), ("training", "weight_decay"), ("training", "scheduler"),
    ("training", "warmup_epochs"), ("training", "plateau_factor"), ("training", "plateau_patience"),
    ("training", "min_lr"), ("training", "seed"),
    ("data", "manual_splits"), ("data", "train_patients"), ("data", "val_patients"), ("data", "test_patients"),
    ("data", "train_ratio"), ("data", "val_ratio"), ("data", "test_ratio"), ("data", "split_seed"),
    ("data", "label_fraction"), ("data", "max_pairs_per_patient"), ("data", "pair_gap_frames"),
    ("loss", "latent_prediction"))


# A schedule of optimizer steps (cosine, onecycle) is laid out by how many steps an epoch has: these set that.
STEP_SCHEDULE_KEYS = (("training", "batch_size"), ("training", "accumulate_grad_batches"))


def run_keys(scheduler: str) -> Tuple[Tuple[str, str], ...]:
    """What a run with ``scheduler`` cannot change on resume."""
    return RUN_KEYS + (STEP_SCHEDULE_KEYS if scheduler in STEP_SCHEDULERS else ())


def changed_keys(before: Config, after: Config, keys=RUN_KEYS) -> List[Tuple[str, Any, Any]]:
    """``[(section.key, before's value, after's value)]`` for each of ``keys`` whose value differs."""
    changes = []
    for section, key in keys:
        old, new = getattr(getattr(before, section), key), getattr(getattr(after, section), key)
        if old != new:
            changes.append((f"{section}.{key}", old, new))
    return changes
