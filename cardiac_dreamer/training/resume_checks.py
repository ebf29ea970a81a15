"""What makes a resume safe: it continues its own run, with the settings, pairs and labels that run trained on.

Each check refuses in one line before anything of the run is rewritten: a resume that went on with other settings,
other pairs or other labels would train the rest of the run on something its records do not describe.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from ..config import Config, changed_keys, run_keys
from ..data.normalization import NormalizationStats
from ..data.prepare import PreparedData
from ..errors import CheckpointError, ConfigError, DataError
from ..geometry import AXIS_NAMES, AXIS_UNITS
from ..io.checkpoint import TrainingState
from ..io.fileio import read_json
from ..io.run_dir import RunDirectory


def check_own_run(checkpoint: Path, state: TrainingState) -> None:
    """Refuse to resume a training state anywhere but in its own run, before anything is written.

    Why: a resume writes into the checkpoint's run (config, metrics, top-k files, which it reconciles with its
    registry by deleting the files it does not know). A ``last.ckpt`` copied elsewhere would write beside the copy;
    one copied into another run, even of the same command with another seed, would delete that run's checkpoints.
    So it must sit in ``RUN/checkpoints/`` beside ``RUN/experiment_config.json``, whose run id (runs begun before
    the id have none) and run keys (the settings a resume cannot change) are its own."""
    run = RunDirectory.of_checkpoint(checkpoint)
    if Path(checkpoint).resolve().parent.name != "checkpoints" or not run.experiment_config.is_file():
        raise CheckpointError(f"{checkpoint}: not in a run (RUN/checkpoints/ beside RUN/experiment_config.json); "
                              "resume the run's own checkpoints/last.ckpt where training wrote it")
    recorded = read_json(run.experiment_config, "run config", CheckpointError)
    if not isinstance(recorded, dict) or "config" not in recorded:
        raise CheckpointError(f"{run.experiment_config}: no run config (a JSON object with a 'config' entry); this "
                              "run cannot be resumed")
    try:
        run_config = Config.from_stored(recorded["config"], source=str(run.experiment_config))
    except (TypeError, ConfigError) as error:
        raise CheckpointError(f"{run.experiment_config}: no usable run config ({error}); this run cannot be "
                              "resumed") from None
    if state.run_id and recorded.get("run_id") and state.run_id != recorded["run_id"]:
        raise CheckpointError(f"{checkpoint}: not a checkpoint of the run it sits in (run id {state.run_id}, the "
                              f"run's {recorded['run_id']}); resume a run from its own last.ckpt")
    own = Config.from_stored(state.config, source=f"{checkpoint} config")
    differing = [f"{key} {mine!r} (the run: {theirs!r})"
                 for key, theirs, mine in changed_keys(run_config, own, run_keys(own.training.scheduler))]
    if differing:
        raise CheckpointError(f"{checkpoint}: not a checkpoint of the run it sits in ({', '.join(differing)}); "
                              "resume a run from its own last.ckpt")


def refuse_changed_settings(path: Path, state: TrainingState, config: Config) -> None:
    """ConfigError naming the first setting a resume from ``path`` may not change (the optimizer, schedule, split
    and data settings come back from its state, so a change to them would not apply). Why a function: the pipeline
    checks it before it compares the data with the run's, so a changed setting is named as itself, not as the other
    data it draws."""
    changes = changed_keys(Config.from_stored(state.config, f"{path} config"), config,
                           run_keys(config.training.scheduler)) if state.config else []
    if changes:
        key, trained, asked = changes[0]
        raise ConfigError(f"{path}: the run was trained with {key} {_shown(trained)} and cannot change it to "
                          f"{_shown(asked)} on resume (the checkpoint's state holds it); keep {key} "
                          f"{_shown(trained)}, or start a new run")


def check_same_pairs(run: RunDirectory, prepared: PreparedData, data_dir: str) -> None:
    """A resume trains on as many pairs of each patient as the run did: a patient whose count changed since (a folder
    re-exported, pairs deleted) would train the rest of the run, and the schedule's step count, on other data. (A
    re-export with the same count and other labels is caught by :func:`check_same_statistics`.)"""
    changed = run.changed_pair_counts(prepared.samples_per_patient)
    if changed:
        patient, recorded, now = changed[0]
        raise DataError(f"{data_dir}: patient {patient} has {now} pairs, and had {recorded} when the run last started "
                        f"({run.dataset_stats}); a resume would train on other data: restore the data or start a new "
                        "run")


def check_same_statistics(checkpoint: Path, state: TrainingState, stats: NormalizationStats, data_dir: str) -> None:
    """A resume fits the pose and move statistics again on its training pairs: they must be the ones the run
    trained with (the model's buffers in ``checkpoint``), bit for bit in float32. Why: a patient re-exported with as
    many pairs but other labels passes the pair count, and would train the rest of the run on other targets.
    Buffers that are no 6 finite numbers are left to the weights' checks, which name the damage."""
    for prefix, axis_stats in (("pose", stats.pose), ("move", stats.move)):
        for field in ("mean", "std"):
            trained = state.model_state.get(f"{prefix}_{field}")
            if not isinstance(trained, torch.Tensor) or trained.shape != (6,) or not trained.is_floating_point() \
                    or not torch.isfinite(trained).all():
                continue
            now = torch.tensor(getattr(axis_stats, field), dtype=trained.dtype)
            differs = (now != trained.cpu()).nonzero().flatten().tolist()
            if differs:
                axis, unit = differs[0], AXIS_UNITS[differs[0]]
                raise DataError(f"{data_dir}: the training pairs' {prefix} {field} of {AXIS_NAMES[axis]} is "
                                f"{now[axis].item():.9g} {unit} now and was {trained[axis].item():.9g} {unit} when "
                                f"the run started ({checkpoint}): the labels changed (or another version of the "
                                "package or numpy fits or draws them otherwise), and a resume would train on other "
                                "targets: restore the data or start a new run")


def _shown(value: Any) -> str:
    """A setting as a user writes it on the command line: ``plateau``, ``a,b``, ``0.002``."""
    return ",".join(map(str, value)) if isinstance(value, list) else str(value)
