"""Run a trained model over a patient split and score it: the inference loop (``evaluate``) and what
``cardiac-evaluate`` does around it (``evaluate_checkpoint``: the checkpoint's split, statistics and baselines, then
the report's files). What is scored, and how it is shown, is :mod:`.report`'s.
"""
from __future__ import annotations

import dataclasses
import logging
import os
import reprlib
import time
from pathlib import Path
from typing import Collection, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from ..config import LossConfig, check_choice, name_list, whole_number
from ..data.dataset import TransitionsDataset
from ..data.image_check import verify_undecoded_images
from ..data.prepare import dataset_from_config, prepare_data
from ..data.records import TransitionRecord
from ..errors import CheckpointError, ConfigError, DataError, error_text
from ..geometry import AXIS_NAMES
from ..io.checkpoint import ModelCheckpoint
from ..io.run_dir import RunDirectory, refuse_earlier_report, removed_if_left_empty, report_directory
from ..losses import per_sample_pose_loss
from ..models.registry import can_imagine
from ..models.system import GuidanceModel
from ..names import RECORD_TIME, SPLIT_CHOICES, SPLIT_NAMES
from ..runtime.devices import select_device
from ..task import GuidanceTask, LatentTarget
from .baselines import BASELINES, BaselineData
from .diagnostics import WorldModelErrors, move_transfer_slopes
from .loading import load_run
from .report import EvaluationReport
from .report_files import REPORT_FILES, write_report
from .sequence import sequence_metrics

log = logging.getLogger(__name__)

PathLike = Union[str, os.PathLike]
SLOPE_IMAGES = 64  # images the move-transfer slopes are measured on


@torch.inference_mode()
def evaluate(
    model: GuidanceModel,
    dataset: TransitionsDataset,
    device: Union[str, torch.device] = "cpu",
    batch_size: int = 32,
    progress: bool = True,
    loss_cfg: Optional[LossConfig] = None,
    target_encoder: Optional[LatentTarget] = None,
    target_note: str = "no target encoder given",
) -> EvaluationReport:
    """Run ``model`` over ``dataset`` (in order, fp32, eval mode) and score each prediction of at1.

    The model speaks mm and degrees; the labels are the records' physical values. The model's train/eval mode is
    restored afterwards. World models also get their diagnostics; the latent errors need the latent loss's
    ``target_encoder`` (without one, ``target_note`` says why in their place) and are made as ``loss_cfg`` (a new
    run's by default; pass an older model's stored ``config.loss``, as :func:`evaluate_checkpoint` does) says.
    """
    device = select_device(device)
    task = GuidanceTask(model, loss_cfg or LossConfig(), device)
    beta = task.loss_cfg.smooth_l1_beta
    was_training = model.training
    model.to(device).eval()
    collected: Dict[str, List[torch.Tensor]] = {"guidance": [], "composed": [], "guidance_loss": [],
                                                "composed_loss": []}
    order: List[int] = []
    world = None
    if can_imagine(model):
        if target_encoder is not None:
            target_encoder.encoder.to(device)
        world = WorldModelErrors(target_encoder, task.loss_cfg.smooth_l1_beta, model.config.composition,
                                 note=target_note, prediction=task.loss_cfg.latent_prediction)
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=0)
    try:
        for raw in tqdm(loader, desc="evaluate", unit="batch", dynamic_ncols=True,
                        disable=True if not progress else None):
            batch = task.prepare_batch(raw, train=False)
            outputs = task.forward(model, batch)
            for name, key in (("guidance", "at1"), ("composed", "at1_composed")):
                if key in outputs:
                    collected[name].append(outputs[key].double().cpu())
                    loss = per_sample_pose_loss(outputs[key], batch["at1"], model.pose_std, beta)  # [B]
                    collected[f"{name}_loss"].append(loss.double().cpu())
            if world is not None:
                world.add(model, batch, outputs)
            order.extend(raw["index"].tolist())
    finally:
        model.train(was_training)
    slopes = None
    if can_imagine(model):
        first = task.prepare_batch(next(iter(DataLoader(dataset, batch_size=SLOPE_IMAGES))), train=False)
        slopes = dict(zip(AXIS_NAMES, move_transfer_slopes(model, first["image_t1"])))
    records: List[TransitionRecord] = [dataset.records[i] for i in order]
    stacked = {name: torch.cat(values).numpy() if values else None for name, values in collected.items()}
    return EvaluationReport(
        labels=np.array([r.at1 for r in records], dtype=np.float64).reshape(-1, 6),
        guidance=stacked["guidance"],
        composed=stacked["composed"],
        train_mean=model.pose_mean.double().cpu().numpy(),
        guidance_losses=stacked["guidance_loss"],
        composed_losses=stacked["composed_loss"],
        patient_ids=[r.patient_id for r in records],
        folders=[r.folder for r in records],
        indices=[r.index for r in records],
        image_paths=[(r.image_t1_rel, r.image_t2_rel) for r in records],
        move_transfer_slope=slopes,
        world_model=world.result() if world is not None else None,
    )


def evaluate_checkpoint(
    checkpoint_path: PathLike,
    split: str = "test",
    data_dir: Optional[PathLike] = None,
    patients: Optional[Sequence[str]] = None,
    output_dir: Optional[PathLike] = None,
    batch_size: int = 32,
    device: Union[str, torch.device] = "auto",
    progress: bool = True,
    replace_report: bool = False,
) -> Tuple[EvaluationReport, Path]:
    """Evaluate a checkpoint on a split of the patients it recorded, with its normalization statistics, and write
    the report (default: ``<run>/evaluation_<split>_<timestamp>/``). What ``cardiac-evaluate`` does.

    ``split`` is ``train``, ``val``, ``test`` or ``all`` (the three together); ``patients`` (a list, or one
    comma-separated string as the command line takes it, a name that holds a comma in double quotes) narrows it to
    some of its patients; ``data_dir`` defaults to the directory recorded at training time. An ``output_dir`` that
    holds an earlier report is refused unless ``replace_report`` (a run re-scoring its own test_evaluation/).
    """
    if not replace_report:
        refuse_earlier_report(output_dir, REPORT_FILES)
    check_choice("split", split, SPLIT_CHOICES)
    batch_size = whole_number(batch_size, "batch_size")
    patients = _patient_names(patients)
    device = select_device(device)
    run = load_run(checkpoint_path)
    model, config, checkpoint = run.model, run.config, run.checkpoint
    checkpoint_path, patient_split = run.path, run.split
    if patient_split is None:
        raise CheckpointError(f"{checkpoint_path}: checkpoint records no patient split; it cannot be evaluated")
    chosen = set(patient_split.select(split, patients, checkpoint.grouping, str(checkpoint_path)))
    trained_on = sorted(chosen & set(patient_split.train))
    if trained_on:
        log.warning("evaluating patients the model trained on (%s): their figures say little about new patients "
                    "(the test split holds those)", ", ".join(trained_on))
    log.info("evaluating %s on the %s split", checkpoint_path, split)
    # the export's pairs throughout: data.pair_gap_frames changes what a run trains on, never what it is scored on
    data_cfg = dataclasses.replace(config.data, data_dir=str(data_dir or checkpoint.data_dir or config.data.data_dir),
                                   pair_gap_frames=0)
    if data_dir is None and not Path(data_cfg.data_dir).is_dir():
        raise DataError(f"{data_cfg.data_dir}: the data directory {checkpoint_path} was trained on is not there; "
                        "give it as data_dir (--data_dir DIR; moved, or evaluated on another machine)")
    prepared = prepare_data(data_cfg, split=patient_split, grouping=checkpoint.grouping)
    fitted_on = set(patient_split.train) | set(patient_split.val)  # the baselines' patients
    _warn_of_changed_pairs(RunDirectory.of_checkpoint(checkpoint_path), prepared.samples_per_patient,
                           chosen | fitted_on)
    records = [record for name in SPLIT_NAMES for record in prepared.records[name] if record.patient_id in chosen]
    dataset = dataset_from_config(records, data_cfg)
    verify_undecoded_images([dataset], data_cfg.image_size)
    made_here = output_dir is None or not Path(output_dir).exists()
    output_dir = report_directory(output_dir, RunDirectory.of_checkpoint(checkpoint_path).root / f"evaluation_{split}",
                                  [Path(data_cfg.data_dir)], "evaluation output")
    with removed_if_left_empty(output_dir, made_here):
        target, target_note = _target_encoder(checkpoint, model, checkpoint_path)
        report = evaluate(model, dataset, device, batch_size, progress, config.loss, target, target_note)
        train = prepared.labelled_training_records()  # label-scarce runs: the baselines get the labels the model had
        report.baselines = _baselines(BaselineData(train, prepared.records["val"], data_cfg.image_size,
                                                   config.training.seed), dataset.records)
        if train:  # the mean of what is predicted, at1, as --cv's (the model's pose mean also counts at2)
            report.train_mean = report.baselines.pop("train_mean")[0]
        report.sequence = sequence_metrics(model, dataset.records, data_cfg.image_size, device, train)
        report.metadata = {
            "checkpoint": str(checkpoint_path.resolve()),
            "epoch": checkpoint.epoch,  # of the best-ranked one, for an averaged checkpoint
            # null unless averaged (training.average_top_k)
            "averaged_epochs": checkpoint.metrics.get("averaged_epochs"),
            "variant": config.model.variant,
            "split": split,
            "data_dir": str(Path(data_cfg.data_dir).resolve()),
            "evaluated": time.strftime(RECORD_TIME),
        }
        write_report(report, output_dir)
    return report, output_dir


def _patient_names(patients) -> Optional[List[str]]:
    """``patients`` as evaluate_checkpoint takes them (None: the whole split; a list of names, or one comma-separated
    string) as a list; ConfigError for an empty selection (a filter that matched nothing would otherwise evaluate
    every patient) or anything that is not names."""
    if patients is None:
        return None
    names = name_list(patients) if isinstance(patients, str) else patients
    if not isinstance(names, (list, tuple)) or not all(isinstance(name, str) for name in names):
        raise ConfigError(f"patients must be a list of patient names or one comma-separated string, got "
                          f"{reprlib.repr(patients)}")
    if not names:
        raise ConfigError("patients names no patient; give None to evaluate the whole split")
    return list(names)


def _warn_of_changed_pairs(run: RunDirectory, samples_per_patient: Dict[str, int], patients: Collection[str]) -> None:
    """Figures on patients whose number of pairs changed since the run recorded it (a re-export, pairs deleted) are
    not comparable with the run's own, nor are baselines refitted on training or validation patients that changed
    (a folder added under a training patient's name joins their fit): said in one line, since new data is allowed."""
    changed = run.changed_pair_counts(samples_per_patient, patients)
    if changed:
        log.warning("pairs per patient changed since the run recorded them (%s): %s; these figures are not "
                    "comparable with the run's", run.dataset_stats,
                    ", ".join(f"{patient} {now} (was {recorded})" for patient, recorded, now in changed))


def _target_encoder(checkpoint: ModelCheckpoint, model: GuidanceModel,
                    path: Path) -> Tuple[Optional[LatentTarget], str]:
    """The latent loss's EMA target encoder saved with the checkpoint (``last.ckpt`` of older runs keeps it in its
    task state), or None and why not."""
    state = checkpoint.target_encoder or getattr(checkpoint, "task_state", {}).get("latent_target")
    if not can_imagine(model):
        return None, "a direct model has no world model"
    if not state:
        return None, ("this checkpoint holds no target encoder (saved before it was stored with model checkpoints, "
                      "or trained without the latent loss); evaluate its run's checkpoints/last.ckpt")
    target = LatentTarget(model.backbone, momentum=0.0)
    try:
        target.load_state_dict(state)
    except RuntimeError as error:
        raise CheckpointError(f"{path}: its target encoder does not fit the recorded model "
                              f"({error_text(error, 160)})") from None
    return target, ""


def _baselines(data: BaselineData, evaluated: Sequence[TransitionRecord]) -> Dict[str, Optional[np.ndarray]]:
    """Each baseline's at1 for ``evaluated`` (in order), fitted on ``data``; None for each without training pairs."""
    if not data.train:
        log.warning("baselines skipped: the checkpoint's split has no training pairs here")
        return {name: None for name in BASELINES if name != "train_mean"}
    return {name: fit(data)(evaluated) for name, fit in BASELINES.items()}
