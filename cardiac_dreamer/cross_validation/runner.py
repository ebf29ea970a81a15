"""Running a cross-validation: every fold and seed trained (or its stopped run continued) and scored, the baselines
fitted on the same folds, then the summary written. A fold's ``fold_result.json``, written last, marks it finished."""
from __future__ import annotations

import logging
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import numpy as np

from ..config import Config, is_whole
from ..data.prepare import choose_labelled_patients, read_grouped_records
from ..data.records import TransitionRecord
from ..errors import ConfigError, DataError, Interrupted
from ..evaluation import evaluate_checkpoint
from ..evaluation import metrics as pose_metrics
from ..evaluation.baselines import BASELINES, SEED_FREE, BaselineData
from ..io.fileio import read_json, write_json
from ..io.run_dir import ensure_outside, ensure_outside_runs, timestamped_directory
from ..names import RECORD_TIME, TEST_EVALUATION
from ..pipeline import run_training
from ..training import distributed as dist
from .plan import PLAN_FILE, CrossValidationPlan, check_same_grouping, plan_cross_validation, read_plan
from .summary import METRICS, format_summary, summarize, summary_metrics, write_summary

log = logging.getLogger(__name__)

RESULT_FILE = "fold_result.json"
RESULT_KEYS = ("fold", "seed", "split", "samples", "metrics", "per_patient")  # what the summary reads of a fold


@dataclass
class CrossValidationResult:
    """The finished cross-validation: where it is and the content of ``cv_summary.json``."""

    cv_dir: Path
    summary: Dict[str, Any]

    def summary_table(self) -> str:
        return format_summary(self.summary)


def run_cross_validation(
    config: Optional[Config],
    output_dir: Optional[Path] = None,
    compare: bool = False,
    resume_dir: Optional[Path] = None,
    argv: Optional[Sequence[str]] = None,
    progress: bool = True,
    seeds: int = 1,
) -> CrossValidationResult:
    """Train and score every fold and seed (of both variants with ``compare``) and the baselines, then write the
    summary.

    A new run plans the folds from ``config`` (``data.cv_folds``, ``data.split_seed``; seeds from
    ``training.seed`` on) in a new ``output_dir/cv_YYYYMMDD_HHMMSS``. ``resume_dir`` continues such a directory with
    its stored plan (``config``, ``compare`` and ``seeds`` are then ignored): finished runs are kept, an unfinished
    one continues from its ``last.ckpt`` when it has one, else starts again.
    """
    if dist.launched_by_torchrun():
        raise ConfigError("cross-validation runs in one process; launch cardiac-train without torchrun")
    if resume_dir is not None:
        cv_dir = Path(resume_dir)
        plan = read_plan(cv_dir)
        check_same_grouping(plan, cv_dir)
        log.info("resuming cross-validation %s", cv_dir)
    else:
        plan = plan_cross_validation(config, compare, seeds)
        if output_dir is None:
            raise ConfigError("an output directory is needed for a new cross-validation run")
        ensure_outside(Path(output_dir) / "cv", plan.config.data.data_dir, "cross-validation output")
        ensure_outside_runs(Path(output_dir))
        cv_dir = timestamped_directory(Path(output_dir), "cv")
        write_json(cv_dir / PLAN_FILE, {**plan.to_dict(), "command_line": list(argv or []),
                                        "created": time.strftime(RECORD_TIME)})
    runs = [(variant, index, seed) for index in range(len(plan.folds)) for seed in plan.seeds
            for variant in plan.variants]
    finished = {run: _finished_result(cv_dir, *run) for run in runs}  # every stored result checked before a fold trains
    results: Dict[str, List[Dict[str, Any]]] = {variant: [] for variant in plan.variants}
    try:
        for variant, index, seed in runs:
            result = finished[variant, index, seed] or _run_and_record_fold(plan, cv_dir, variant, index, seed, argv,
                                                                             progress)
            results[variant].append(result)
    except (Interrupted, KeyboardInterrupt):  # a fold's own hint would resume the fold alone, not the folds after it
        raise Interrupted(f"continue with: cardiac-train --resume_cv {cv_dir}") from None
    results.update(baseline_results(plan))
    summary = summarize(plan, results)
    write_summary(cv_dir, summary)
    return CrossValidationResult(cv_dir, summary)


def fold_dir(cv_dir: Path, variant: str, index: int, seed: int) -> Path:
    """``cv_dir/<variant>/fold_<index + 1>/seed_<seed>``: folds are numbered from 1 for people."""
    return Path(cv_dir) / variant / f"fold_{index + 1}" / f"seed_{seed}"


def _finished_result(cv_dir: Path, variant: str, index: int, seed: int) -> Optional[Dict[str, Any]]:
    """The stored ``fold_result.json`` of a finished fold, checked; None when the fold has not finished."""
    result_path = fold_dir(cv_dir, variant, index, seed) / RESULT_FILE
    if not result_path.is_file():
        return None
    log.info("%s fold %d seed %d already finished: %s", variant, index + 1, seed, result_path)
    result = read_json(result_path, "fold result (delete it to redo the fold)", DataError)
    problem = _fold_result_problem(result, index + 1, seed)
    if problem:
        raise DataError(f"{result_path}: not a fold result ({problem}); delete it to redo the fold")
    return result


def _run_and_record_fold(plan: CrossValidationPlan, cv_dir: Path, variant: str, index: int, seed: int,
                         argv: Optional[Sequence[str]], progress: bool) -> Dict[str, Any]:
    """Train and score the fold, then store its result (written last: a fold with a result is finished)."""
    log.info("%s fold %d of %d, seed %d: reporting %s, selecting on %s", variant, index + 1, len(plan.folds), seed,
             ", ".join(plan.folds[index].val), ", ".join(plan.inner_val[index]))
    result = run_fold(plan, cv_dir, variant, index, seed, argv, progress)
    write_json(fold_dir(cv_dir, variant, index, seed) / RESULT_FILE, result)
    return result


def _fold_result_problem(result: Any, fold: int, seed: int) -> Optional[str]:
    """What makes ``result`` unusable as the summary's record of ``fold`` and ``seed`` (None: nothing), so that a
    damaged file is named before the summary is rewritten, not met as a traceback while it is."""
    missing = [key for key in RESULT_KEYS if not isinstance(result, dict) or key not in result]
    if missing:
        return f"no {', '.join(missing)}"
    whole = all(is_whole(result[key]) and result[key] >= 0 for key in ("fold", "seed", "samples"))
    if not whole or (result["fold"], result["seed"]) != (fold, seed):
        return f"fold {result['fold']!r}, seed {result['seed']!r}, samples {result['samples']!r}: expected fold " \
               f"{fold}, seed {seed} and a whole number of samples"
    if not isinstance(result["split"], dict) or not isinstance(result["split"].get("val"), list):
        return "split: expected an object with a list of val patients"
    if not isinstance(result["per_patient"], dict):
        return "per_patient: expected an object"
    scores = {"metrics": result["metrics"],
              **{f"per_patient.{name}": entry for name, entry in result["per_patient"].items()},
              **{key: result[key] for key in ("composed_metrics", "test_metrics") if result.get(key) is not None}}
    for name, entry in scores.items():
        bad = [key for key in METRICS if not isinstance(entry, dict) or not _is_score(entry.get(key, "missing"))]
        if bad:
            return f"{name}.{bad[0]}: expected a finite number or null"
    return None


def _is_score(value: Any) -> bool:
    """None (JSON's null: no figure) or a finite number a float holds; the comparison is False for NaN."""
    return value is None or (isinstance(value, (int, float)) and not isinstance(value, bool)
                             and -sys.float_info.max <= value <= sys.float_info.max)


def run_fold(plan: CrossValidationPlan, cv_dir: Path, variant: str, index: int, seed: int,
             argv: Optional[Sequence[str]] = None, progress: bool = True) -> Dict[str, Any]:
    """Train one fold and seed into its :func:`fold_dir` (or continue its stopped run) and score the checkpoint its
    inner validation patient selected on the fold's patients, in mm and degrees; the content of
    ``fold_result.json``."""
    directory = fold_dir(cv_dir, variant, index, seed)
    config = plan.fold_config(variant, seed)
    stopped = sorted(directory.glob("run_*/checkpoints/last.ckpt"))
    if stopped:
        log.info("continuing the stopped run %s", stopped[-1])
        outcome = run_training(config, resume_from=stopped[-1], argv=argv, progress=progress, evaluate_test=False)
    else:
        outcome = run_training(config, output_dir=directory, split=plan.run_split(index), argv=argv,
                               progress=progress, evaluate_test=False)
    checkpoint = outcome.fit.deployed_checkpoint or outcome.fit.final_model
    fold, held_out = plan.folds[index].val, plan.folds[index].test
    report, _ = evaluate_checkpoint(checkpoint, split="test", patients=fold,
                                    output_dir=outcome.run_dir / "fold_evaluation",
                                    batch_size=config.training.batch_size, device=config.training.device,
                                    progress=progress, replace_report=True)
    metrics = report.metrics
    test_metrics = None
    if held_out:
        test_report, _ = evaluate_checkpoint(checkpoint, split="test", patients=held_out,
                                             output_dir=outcome.run_dir / TEST_EVALUATION,
                                             batch_size=config.training.batch_size, device=config.training.device,
                                             progress=progress, replace_report=True)
        test_metrics = summary_metrics(test_report.metrics["guidance"])
    return {
        "variant": variant,
        "fold": index + 1,
        "seed": seed,
        "split": plan.run_split(index).to_dict(),
        "run_dir": _relative(outcome.run_dir, cv_dir),
        "checkpoint": _relative(checkpoint, cv_dir),
        "epochs_completed": outcome.fit.epochs_completed,
        "stop_reason": outcome.fit.stop_reason,
        "samples": metrics["samples"],
        "metrics": summary_metrics(metrics["guidance"]),
        "composed_metrics": summary_metrics(metrics["composed"]) if metrics["composed"] else None,
        "per_patient": {patient: {"samples": entry["samples"], **summary_metrics(entry["guidance"])}
                        for patient, entry in metrics["per_patient"].items()},
        "test_metrics": test_metrics,
    }


def baseline_results(plan: CrossValidationPlan) -> Dict[str, List[Dict[str, Any]]]:
    """The baselines of :mod:`cardiac_dreamer.evaluation.baselines` on every fold and seed, shaped like fold results:
    trained on the same training patients (their labelled ones, in label-scarce runs), selected on the same inner
    validation patient, scored on the same patients."""
    records, _ = read_grouped_records(plan.config.data)

    def of(patients: Sequence[str]) -> List[TransitionRecord]:
        return [record for record in records if record.patient_id in set(patients)]

    results: Dict[str, List[Dict[str, Any]]] = {name: [] for name in BASELINES}
    for index, fold in enumerate(plan.folds):
        split = plan.run_split(index)
        labelled = choose_labelled_patients(plan.config.data, split)  # the patients whose labels the fold's model had
        train = of(split.train if labelled is None else labelled)
        val, scored, held_out = of(split.val), of(fold.val), of(fold.test)
        fitted = {}
        for seed in plan.seeds:
            data = BaselineData(train, val, plan.config.data.image_size, seed)
            for name, fit in BASELINES.items():
                if name not in fitted or name not in SEED_FREE:  # a seed-free baseline is fitted once a fold
                    fitted[name] = fit(data)
                predict = fitted[name]
                results[name].append({
                    "variant": name, "fold": index + 1, "seed": seed, "split": split.to_dict(),
                    "samples": len(scored), **_scores(scored, predict(scored)),
                    "test_metrics": _scores(held_out, predict(held_out))["metrics"] if held_out else None,
                })
    return results


def _scores(records: Sequence[TransitionRecord], predictions: np.ndarray) -> Dict[str, Any]:
    labels = np.asarray([r.at1 for r in records], dtype=np.float64).reshape(-1, 6)
    per_patient = pose_metrics.summarize_by_patient(labels, predictions, [r.patient_id for r in records])
    return {"metrics": summary_metrics(pose_metrics.summarize(labels, predictions)),
            "per_patient": {patient: {"samples": entry["samples"], **summary_metrics(entry)}
                            for patient, entry in per_patient.items()}}


def _relative(path: Path, cv_dir: Path) -> str:
    """Paths inside the CV directory are stored relative to it, so the directory can be moved."""
    return Path(path).resolve().relative_to(Path(cv_dir).resolve()).as_posix()
