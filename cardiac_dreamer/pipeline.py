"""One training run from a config to a complete run directory — what ``cardiac-train`` does, callable from a notebook.

Order matters for users: everything that can fail on bad input (config, data, images, model, optimizer, schedule,
the resumed checkpoint) is built and checked before the run directory is made or, on resume, before any of its
files is rewritten, so a mistake never leaves a half-made run behind nor a run whose metadata no longer describes
its checkpoints.
"""
from __future__ import annotations

import contextlib
import dataclasses
import logging
import shutil
import uuid
from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Sequence, Tuple

import numpy as np

from .io.checkpoint import load_training_state
from .config import Config, with_absolute_paths
from .data.consistency import ConsistencyReport, check_label_consistency
from .data.image_check import verify_images, verify_undecoded_images
from .data.normalization import unvarying_pose_axes
from .data.prepare import PreparedData, build_datasets, prepare_data
from .data.splits import PatientSplit, folders_by_patient
from .data.transforms import read_grayscale
from .runtime.devices import environment_info, select_device
from .errors import ConfigError, DataError, Interrupted
from .evaluation import EvaluationReport, evaluate_checkpoint
from .io.fileio import remove_stale_temporaries, write_json
from .geometry import AXIS_NAMES, AXIS_UNITS, mean_pose, unwrapped_poses
from .models.registry import build_model, without_imagenet_start
from .names import MONITOR, SPLIT_NAMES, TEST_EVALUATION
from .io.run_dir import RunDirectory, ensure_outside, ensure_outside_runs, hand_back_latest, \
    set_latest, write_experiment_config
from .training import distributed as dist
from .training.loggers import epoch_rows
from .training.reproducibility import seed_everything
from .data.chains import check_frame_numbers
from .training.sequence_stage import train_sequence_stage
from .training.resume_checks import check_own_run, check_same_pairs, check_same_statistics, \
    refuse_changed_settings
from .training.trainer import FitResult, Trainer

log = logging.getLogger(__name__)


@dataclasses.dataclass
class TrainingOutcome:
    run_dir: Path
    fit: FitResult
    test_evaluation_dir: Optional[Path]
    test_report: Optional[EvaluationReport] = None  # the deployed checkpoint (averaged, else best) on the test patients


def run_training(
    config: Config,
    output_dir: Optional[Path] = None,
    resume_from: Optional[Path] = None,
    split: Optional[PatientSplit] = None,
    argv: Optional[Sequence[str]] = None,
    progress: bool = True,
    evaluate_test: bool = True,
) -> TrainingOutcome:
    """Train one model end to end and return where its run directory is.

    A new run goes to ``output_dir/run_YYYYMMDD_HHMMSS``; a resumed run continues the run directory of
    ``resume_from`` with the split and normalization statistics stored there. ``split`` fixes the patients
    (cross-validation folds pass theirs).
    """
    device = select_device(config.training.device)
    dist.init_process_group(device)
    resume_state = load_training_state(resume_from) if resume_from is not None else None
    resumed_run = RunDirectory.of_checkpoint(resume_from) if resume_state is not None else None
    if resume_state is None:
        config = with_absolute_paths(config)  # the run records where its data is, wherever it is resumed from
    else:
        ensure_outside(resumed_run.root, config.data.data_dir, "run directory", culprit=resume_from)
        check_own_run(resume_from, resume_state)
        refuse_changed_settings(resume_from, resume_state, config)  # before the data is compared with the run's
        split = PatientSplit.from_dict(resume_state.split or {})
    run_id = (resume_state.run_id if resume_state is not None else None) or uuid.uuid4().hex  # older runs get one
    prepared = prepare_data(config.data, split, composition=config.model.composition)
    if resume_state is not None:
        check_same_pairs(resumed_run, prepared, config.data.data_dir)
        check_same_statistics(resume_from, resume_state, prepared.stats, config.data.data_dir)
    datasets = build_datasets(prepared, config.data, normalize_images=False)
    consistency = _check_training_data(config, prepared, datasets)

    seed_everything(config.training.seed, config.training.deterministic)  # the initial weights follow the seed too
    # A resumed run's weights come from last.ckpt: its ImageNet start file need not be here any more.
    start = config if resume_state is None else dataclasses.replace(config, model=without_imagenet_start(config.model))
    model = build_model(start, prepared.stats)
    metadata = {"split": prepared.split.to_dict(), "data_dir": str(Path(config.data.data_dir).resolve()),
                "grouping": prepared.grouping, "run_id": run_id}
    trainer = Trainer(config, metadata=metadata, progress=progress)
    trainer.setup(model, datasets["train"], datasets["val"], resume_from=resume_from)  # no file written yet

    if resume_state is not None:
        run = resumed_run
        if dist.is_main_process():  # the only rank that writes the run
            run.ensure_resumable()
    else:
        run = _create_run(output_dir, config.data.data_dir)
    new = resume_state is None
    report, evaluation_dir = None, None
    with run.lock() if dist.is_main_process() else contextlib.nullcontext():  # rank 0 speaks for the run
        if not new:  # writes a kill interrupted: a final_model.ckpt, a plot, a CSV rewrite, the test evaluation
            for folder in (run.root, run.plots, run.metrics_csv.parent, run.root / TEST_EVALUATION):
                remove_stale_temporaries(folder)
        latest_before = set_latest(run.root.parent, run.root.name) if new and dist.is_main_process() else None
        trained = False  # whether this call got through training (its last epoch and the sequence stage)
        try:
            fit = _train(trainer, run, prepared, consistency.summary(), config, device, argv, resume_from)
            trained = True
            if dist.is_main_process():  # an interruption here leaves a complete run: the resume hint finishes it
                report, evaluation_dir = _summarize(run, fit, config, evaluate_test and "test" in datasets, progress)
        except BaseException as error:
            _forget_unstarted(run, new, latest_before)
            if isinstance(error, KeyboardInterrupt):
                raise Interrupted(_resume_hint(run, trained)) from None
            raise
    dist.barrier()
    dist.destroy_process_group()  # joined above; left open, NCCL warns at exit that resources may leak
    return TrainingOutcome(run.root, fit, evaluation_dir, report)


def _check_training_data(config: Config, prepared: PreparedData, datasets: Mapping[str, Any]) -> ConsistencyReport:
    """Refuse, before anything is written, what would fail mid-epoch or in the sequence stage after the fit; warn
    about labels that break the model's composition rule or never change on an axis. Returns the label check."""
    if "train" not in datasets or "val" not in datasets:
        raise DataError(f"{config.data.data_dir}: the training and validation splits both need samples")
    verify_undecoded_images(datasets.values(), config.data.image_size)
    if config.model.sequence_frames:
        check_frame_numbers(prepared.sequence_records(), config.model.sequence_frames, config.data.data_dir)
        _verify_frames_left_out_of_training(prepared, config.data.image_size)
    consistency = check_label_consistency(prepared.records["train"])
    if not consistency.matches(config.model.composition):  # the rule --check_data warns by
        log.warning("model.composition is %s but %s", config.model.composition, consistency.summary())
    unvarying = unvarying_pose_axes(prepared.labelled_training_records())
    if unvarying:
        log.warning("the training poses never change on %s: the model learns nothing there", ", ".join(unvarying))
    return consistency


def _summarize(run: RunDirectory, fit: FitResult, config: Config, evaluate_test: bool,
               progress: bool) -> Tuple[Optional[EvaluationReport], Optional[Path]]:
    """After training (rank 0): the summary plot and, when asked and a model was deployed, the test evaluation."""
    from . import plots  # matplotlib only once there is something to draw: refusals stay quick

    plots.plot_training_summary(run.plots / "training_summary.png", epoch_rows(run.metrics_csv), _final_metrics(fit),
                                first_ranked_epoch=config.training.pretrain_epochs)
    if not evaluate_test or fit.deployed_checkpoint is None:
        return None, None
    return evaluate_checkpoint(fit.deployed_checkpoint, split="test", output_dir=run.root / TEST_EVALUATION,
                               batch_size=config.training.batch_size, device=config.training.device,
                               progress=progress, replace_report=True)


def _train(trainer: Trainer, run: RunDirectory, prepared: PreparedData, label_rule: str, config: Config,
           device, argv: Optional[Sequence[str]], resume_from: Optional[Path]) -> FitResult:
    """Write the run's records (rank 0), then train."""
    if dist.is_main_process():
        write_experiment_config(run, config.to_dict(), environment_info(device), argv,
                                extra={"run_id": trainer.metadata["run_id"],
                                       "resumed_from": str(resume_from) if resume_from else None})
        write_json(run.dataset_stats, dataset_stats(prepared, config.data.data_dir, label_rule))
        _plot_dataset(run, prepared, label_rule)
    fit = trainer.fit(run=run)
    if config.model.sequence_frames and dist.is_main_process() and fit.deployed_checkpoint is not None:
        train_sequence_stage(fit.deployed_checkpoint, prepared.sequence_records(), config, device,
                             run.final_model, run.best_checkpoint)
    return fit


def _forget_unstarted(run: RunDirectory, new: bool, latest_before: Optional[str]) -> None:
    """A run this call created that failed before its first training state holds nothing to resume: remove it, so
    a mistake or an interruption leaves no half-made run behind (a resumed run is always kept), and hand
    ``latest`` back to the run it named before, unless a newer run has taken it since."""
    if new and dist.is_main_process() and not run.last_checkpoint.exists():
        shutil.rmtree(run.root, ignore_errors=True)
        hand_back_latest(run.root.parent, run.root.name, latest_before)


def _resume_hint(run: RunDirectory, trained: bool) -> str:
    if trained:  # stopped in the summary plot or the test evaluation: the resume trains nothing more
        return (f"training finished in {run.root}, not the summary plot and test evaluation that follow it; finish "
                f"them with: cardiac-train --resume_from_checkpoint {run.last_checkpoint}")
    if run.last_checkpoint.exists():
        return f"continue with: cardiac-train --resume_from_checkpoint {run.last_checkpoint}"
    return "stopped before the first epoch ended: there is nothing to resume, start again"


def _create_run(output_dir: Optional[Path], data_dir: str) -> RunDirectory:
    """Rank 0 makes the directory (never inside the data directory); the other ranks learn its name."""
    if output_dir is None:
        raise ConfigError("an output directory is needed for a new run")
    ensure_outside(Path(output_dir), data_dir, "output directory")
    ensure_outside_runs(Path(output_dir))
    root = RunDirectory.create(Path(output_dir)).root if dist.is_main_process() else None
    return RunDirectory(Path(dist.broadcast_object(str(root) if root else None)))


def _verify_frames_left_out_of_training(prepared: PreparedData, image_size: int) -> None:
    """The sequence stage reads every frame of the exported training pairs; the t2 images that data.pair_gap_frames
    left out of training are checked now too, before anything is written."""
    left_out = [record for record, pair in zip(prepared.records["train"], prepared.training_pairs)
                if pair.image_t2 != record.image_t2]
    if left_out:
        verify_images(left_out, image_size)


def dataset_stats(prepared: PreparedData, data_dir: str, composition_summary: str) -> Dict[str, Any]:
    """``dataset_stats.json``: who is in which split, how many pairs, and the targets in mm and degrees."""
    split = prepared.split.to_dict()
    per_split = {}
    for name in SPLIT_NAMES:
        records = prepared.records[name]
        per_split[name] = {
            "patients": split[name],
            "num_patients": len(split[name]),
            "num_samples": len(records),
            "samples_per_patient": {p: prepared.samples_per_patient.get(p, 0) for p in split[name]},
            "at1": _target_stats([r.at1 for r in records]),
            "action_change": _target_stats([r.action_change for r in records]),
        }
    if prepared.training_pairs != prepared.records["train"]:  # data.pair_gap_frames re-drew them along the sweeps
        per_split["train"]["trained_action_change"] = _target_stats([r.action_change for r in prepared.training_pairs])
    return {
        "data_dir": str(Path(data_dir).resolve()),
        "patient_split": prepared.split.split_by_patient(),
        "splits": per_split,
        "folders_per_patient": folders_by_patient(prepared.grouping),
        "normalization": prepared.stats.to_dict(),
        "label_consistency": composition_summary,
    }


def _target_stats(vectors) -> Dict[str, Dict[str, float]]:
    """Per axis, the mean and std (angles read on the circle, as the normalization reads them) and the range as
    written."""
    if not vectors:
        return {}
    values = np.asarray(vectors, dtype=np.float64)
    unwrapped = unwrapped_poses(values)
    return {
        f"{axis}_{unit}": {"mean": float(mean), "std": float(spread.std()),
                           "min": float(column.min()), "max": float(column.max())}
        for axis, unit, mean, spread, column in zip(AXIS_NAMES, AXIS_UNITS, mean_pose(values), unwrapped.T, values.T)
    }


def _plot_dataset(run: RunDirectory, prepared: PreparedData, composition_summary: str) -> None:
    """A preview pair from the first patient of each split, read the way training reads images."""
    from . import plots  # matplotlib only once there is something to draw: refusals stay quick

    size = 128
    pairs = []
    for name in SPLIT_NAMES:
        if prepared.records[name]:
            record = prepared.records[name][0]
            pairs.append((record.patient_id, name, read_grayscale(record.image_t1, size),
                          read_grayscale(record.image_t2, size)))
    plots.plot_dataset_statistics(run.plots / "dataset_statistics.png", prepared.split.to_dict(),
                                  prepared.samples_per_patient, pairs, composition_summary)


def _final_metrics(fit: FitResult) -> Dict[str, Any]:
    return {"epochs_completed": fit.epochs_completed, "stop_reason": fit.stop_reason,
            f"best_{MONITOR}": fit.best_score}
