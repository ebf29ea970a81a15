"""``navigate_checkpoint``: closed-loop guidance of a simulated probe by a checkpoint and the baselines, scored.

What ``cardiac-evaluate --navigate`` does. Everything that can fail on bad input (settings, checkpoint, patients,
output location) is checked before the first episode runs or any directory is made.
"""
from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import List, Optional, Sequence, Tuple, Union

import torch
from tqdm.auto import tqdm

from ...errors import ConfigError
from ...evaluation.loading import load_run
from ...evaluation.predictor import Predictor
from ...io.run_dir import RunDirectory, refuse_earlier_report, removed_if_left_empty, report_directory
from ...names import RECORD_TIME
from ..session import GuidanceSession
from ..settings import NavigationSettings, centred_box
from .patients import NavigationPatient, resolve_patients
from .policies import Policy, SessionPolicy, baseline_policies
from .report import FILES as REPORT_FILES, write_report
from .result import NavigationResult, range_record
from .simulator import Episode, run_episode
from .starts import RANGE_SOURCE, start_box, start_kind, training_range

log = logging.getLogger(__name__)

PathLike = Union[str, os.PathLike]
STRIP_EPISODE = 0  # the episode whose frames are kept for the strip figure


def navigate_checkpoint(
    checkpoint_path: PathLike,
    settings: NavigationSettings = NavigationSettings(),
    data_dir: Optional[PathLike] = None,
    output_dir: Optional[PathLike] = None,
    device: Union[str, torch.device] = "auto",
    progress: bool = True,
) -> Tuple[NavigationResult, Path]:
    """Run every policy on the same episodes and write the report (default: ``<run>/navigation_<timestamp>/``).

    Starts lie within the training poses' range on each axis, drawn from phantom sweeps where the patients were
    written as sweeps, unless ``settings.start_range`` gives a box centred on the view (:mod:`.starts`). An
    ``output_dir`` that holds an earlier report is refused.
    """
    refuse_earlier_report(output_dir, REPORT_FILES)
    checkpoint_path = Path(checkpoint_path)
    run = load_run(checkpoint_path)
    checkpoint, model, config, checkpoint_path = run.checkpoint, run.model, run.config, run.path
    predictor = Predictor(model, device)
    patients, source_dir = resolve_patients(checkpoint, checkpoint_path, config.data.image_size, settings.split,
                                            settings.patients, data_dir)
    low, high = training_range(model.pose_mean.double().cpu().numpy(), model.pose_std.double().cpu().numpy())
    if settings.start_range:
        settings = settings.with_starts("box", *centred_box(*settings.start_range))
    else:
        settings = settings.with_starts(start_kind(patient.trajectory for patient in patients), *start_box(low, high))
    model_policies, skipped = _model_policies(predictor, settings, checkpoint_path)
    if settings.split in ("train", "all") and source_dir is not None:
        log.warning("navigating on training patients (--split %s): this says little about new patients",
                    settings.split)
    # the patients' source, and the checkpoint's own data even when it is real data and fresh phantom patients
    # are navigated: the report goes into neither
    user_data = [Path(folder) for folder in (source_dir, data_dir, checkpoint.data_dir)
                 if folder and Path(folder).is_dir()]
    made_here = output_dir is None or not Path(output_dir).exists()
    output_dir = report_directory(output_dir, RunDirectory.of_checkpoint(checkpoint_path).root / "navigation",
                                  user_data, "navigation output")
    policies = baseline_policies(predictor.composition, model.pose_mean.double().cpu().numpy()) + model_policies
    started = time.perf_counter()
    with removed_if_left_empty(output_dir, made_here):  # a failure leaves no empty folder behind
        episodes = run_policies(policies, patients, settings, predictor.composition, progress)
        result = NavigationResult(
            episodes=episodes,
            policies={policy.name: policy.description for policy in policies},
            patients=patients,
            settings=settings,
            metadata={
                "checkpoint": str(checkpoint_path.resolve()),
                "epoch": checkpoint.epoch,
                "variant": config.model.variant,
                "composition": predictor.composition,
                "planners_skipped": {planner: "the checkpoint is a 'direct' model: no world model"
                                     for planner in skipped},
                "image_size": config.data.image_size,
                "training_range": range_record(low, high, RANGE_SOURCE),
                "device": str(predictor.device),
                "patients_from": str(source_dir.resolve()) if source_dir else "fresh phantom patients: the checkpoint "
                "has no phantom data here",
                "episodes_seconds": round(time.perf_counter() - started, 2),
                "navigated": time.strftime(RECORD_TIME),
            },
        )
        write_report(result, output_dir)
    return result, output_dir


def run_policies(policies: Sequence[Policy], patients: Sequence[NavigationPatient], settings: NavigationSettings,
                 composition: str, progress: bool = True) -> List[Episode]:
    """Every policy on every episode, episode by episode (episode ``i`` on patient ``i mod P``); the frames of
    episode :data:`STRIP_EPISODE` are kept for the strip figure."""
    episodes = []
    for number in tqdm(range(settings.episodes), desc="navigate", unit="episode", dynamic_ncols=True,
                       disable=True if not progress else None):
        patient = patients[number % len(patients)]
        for policy in policies:
            episodes.append(run_episode(policy, patient.phantom, patient.name, number, settings.episode, composition,
                                        keep_frames=number == STRIP_EPISODE))
    return episodes


def _model_policies(predictor: Predictor, settings: NavigationSettings, checkpoint_path: Path
                    ) -> Tuple[List[SessionPolicy], List[str]]:
    """``(one session policy per planner and history, the planners skipped)``: ``imagine`` is skipped for a
    ``direct`` model (no world model), and refused when it is the only planner asked for."""
    planners = [planner for planner in settings.planners if planner != "imagine" or predictor.can_imagine]
    skipped = sorted(set(settings.planners) - set(planners))
    if not planners:
        raise ConfigError(f"{checkpoint_path}: planner 'imagine' needs a world model; this is a 'direct' model "
                          "(use --planner direct)")
    if skipped:
        log.warning("planner 'imagine' skipped: this 'direct' checkpoint has no world model to imagine moves with")
    return [SessionPolicy(_policy_name(history, planner),
                          GuidanceSession(predictor, settings.session_settings(history, planner)))
            for planner in planners for history in settings.histories], skipped


def _policy_name(history: int, planner: str) -> str:
    return f"model_h{history}" + ("" if planner == "direct" else f"_{planner}")


__all__ = ["NavigationResult", "NavigationSettings", "navigate_checkpoint", "run_policies"]
