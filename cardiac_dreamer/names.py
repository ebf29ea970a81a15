"""Every name that files, logs and checkpoints share, defined once.

A metric, file or split name written out in several modules drifts the first time one of them changes; here each
has one spelling that the trainer, the loggers, the plots, evaluation and cross-validation all import.
"""
from __future__ import annotations

import re
from typing import Optional, Sequence, Tuple

# The pose and move components, in this order, and their units (the names here import nothing, so a command that
# refuses its input in one line has not loaded torch first: 0.3 s instead of 4-5 s).
AXIS_NAMES = ("x", "y", "z", "roll", "pitch", "yaw")
AXIS_UNITS = ("mm", "mm", "mm", "deg", "deg", "deg")
TRANSITIONS_FILE = "transitions_dataset.json"  # one per patient folder
RECORD_TIME = "%Y-%m-%dT%H:%M:%S"  # local time, as every JSON record says when it was written (time.strftime)
SPLIT_NAMES = ("train", "val", "test")
SPLIT_CHOICES = SPLIT_NAMES + ("all",)  # what evaluation and navigation take: one split, or the three together

# The terms of the objective, as logged with a train_ / val_ prefix (val_total_loss is logged as val_loss).
LOSS_NAMES = ("total_loss", "main_task_loss", "aux_t2_action_loss", "consistency_loss", "latent_loss")
MONITOR = "val_main_task_loss"  # early stopping, the LR plateau and the top-k checkpoints all follow it
VAL_MAE_NAMES = tuple(f"val_mae_{axis}_{unit}" for axis, unit in zip(AXIS_NAMES, AXIS_UNITS))


def counted(number: int, noun: str) -> str:
    """``1 patient``, ``4 patients``: a count and its noun as logs and tables write them."""
    return f"{number} {noun}{'' if number == 1 else 's'}"


def logged_loss_names(split: str, loss_names: Sequence[str]) -> Tuple[str, ...]:
    """How a task's loss terms are logged on ``split``: ``train_total_loss, train_main_task_loss, ...``; on val the
    first term, the objective, is ``val_loss``, the name the production guide gives it."""
    return tuple("val_loss" if split == "val" and i == 0 else f"{split}_{name}" for i, name in enumerate(loss_names))


def csv_columns(loss_names: Sequence[str], error_names: Sequence[str]) -> Tuple[str, ...]:
    """``metrics.csv``'s columns for a task's loss terms and validation errors; for the guidance task ``epoch, step,
    learning_rate, train_total_loss, ...``."""
    return ("epoch", "step", "learning_rate", *logged_loss_names("train", loss_names),
            *logged_loss_names("val", loss_names), *error_names, "nonfinite_steps")


# Checkpoint files inside a run directory.
CHECKPOINT_PREFIX = "cardiac_dreamer"
CHECKPOINT_SUFFIX = ".ckpt"
LAST_CHECKPOINT = f"last{CHECKPOINT_SUFFIX}"  # the full training state, every epoch
BEST_CHECKPOINT = f"best{CHECKPOINT_SUFFIX}"  # a hard link to the best top-k file
FINAL_MODEL = f"final_model{CHECKPOINT_SUFFIX}"
AVERAGED_CHECKPOINT = f"averaged{CHECKPOINT_SUFFIX}"  # the mean of the top-k weights (training.average_top_k)
TEST_EVALUATION = "test_evaluation"  # the run's evaluation on its held-out patients, inside the run directory
_TOPK_PATTERN = re.compile(  # the monitored metric's name is the task's: any metric name matches
    rf"^{re.escape(CHECKPOINT_PREFIX)}-epoch=(\d+)-[A-Za-z_]\w*=([0-9.]+){re.escape(CHECKPOINT_SUFFIX)}$"
)


def topk_glob(monitor: str) -> str:
    """The pattern of the top-k files ranked by ``monitor``: only those are a run's to delete."""
    return f"{CHECKPOINT_PREFIX}-epoch=*-{monitor}=*{CHECKPOINT_SUFFIX}"


def topk_filename(monitor: str, epoch: int, score: float) -> str:
    """``cardiac_dreamer-epoch=03-val_main_task_loss=0.1234.ckpt``: the epoch and its score on ``monitor``."""
    return f"{CHECKPOINT_PREFIX}-epoch={epoch:02d}-{monitor}={score:.4f}{CHECKPOINT_SUFFIX}"


def parse_topk_filename(name: str) -> Optional[Tuple[int, float]]:
    """``(epoch, score)`` of a top-k file name written by :func:`topk_filename`, None for any other name."""
    found = _TOPK_PATTERN.match(name)
    return (int(found.group(1)), float(found.group(2))) if found else None
