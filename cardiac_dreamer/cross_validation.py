"""Cross-patient k-fold cross-validation, the world-model ablation and its baselines, on the same folds and seeds.

One train/val split of a handful of patients says little; k folds report every patient exactly once. Each fold's
reported patients are never used to choose anything: the fold's model is trained on the remaining patients but one,
and that *inner validation* patient picks the checkpoint (early stopping, the LR plateau, ``best.ckpt``), so the
figures are those of a model selected without seeing its test patients.

With ``compare`` both model variants (``dreamer``, ``direct``) train on the same folds with the same seeds, so the
difference between them is the world model and nothing else. Every summary also scores three baselines on the same
folds (see :mod:`cardiac_dreamer.evaluation.baselines`): the training mean, ``move_only``, an MLP from the move alone, and
``pixel_ridge``, a ridge regression on pooled pixels of the fold's training patients.
``seeds`` > 1 repeats every fold with consecutive training seeds; means and stds are over folds x seeds.

The headline metric of every row is the *guidance*: at1 from the image alone, what a sonographer gets.
Layout of ``OUTPUT_DIR/cv_YYYYMMDD_HHMMSS/``::

    cv_plan.json                                   resolved config, variants, seeds, each fold's patients
    <variant>/fold_<i>/seed_<s>/run_*/              an ordinary run (checkpoints, logs, plots, fold_evaluation/)
    <variant>/fold_<i>/seed_<s>/fold_result.json    written last, atomically: finished (resume skips it)
    cv_summary.json, cv_summary.png, cv_summary.txt

Patients are patient ids (grouping-file groups), so the scans of one person never straddle folds. Held-out test
patients (``data.test_patients``) stay out of every fold and are scored by every fold's model; without them all
patients are in folds and there is no test group. Other manual-split lists are ignored: the folds decide.
"""
from __future__ import annotations

import logging
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence

import numpy as np

from .evaluation.baselines import BASELINES, SEED_FREE, BaselineData
from .config import VARIANTS, Config, apply_overrides, is_whole, with_absolute_paths
from .data.image_check import verify_images
from .data.prepare import choose_labelled_patients, read_grouped_records
from .data.records import TransitionRecord
from .data.splits import PatientSplit, cross_validation_folds
from .errors import ConfigError, DataError, Interrupted
from .evaluation import evaluate_checkpoint
from .evaluation import metrics as pose_metrics
from .io.fileio import atomic_open, read_json, write_json
from .geometry import AXIS_NAMES, AXIS_UNITS
from .pipeline import run_training
from .io.run_dir import ensure_outside, ensure_outside_runs, timestamped_directory
from .names import RECORD_TIME, TEST_EVALUATION
from .training import distributed as dist

log = logging.getLogger(__name__)

PLAN_FILE = "cv_plan.json"
RESULT_FILE = "fold_result.json"
COMPARED_VARIANTS = ("dreamer", "direct")  # what --compare trains, in its order: the world model, then its baseline
RESULT_KEYS = ("fold", "seed", "split", "samples", "metrics", "per_patient")  # what the summary reads of a fold
METRICS = tuple(pose_metrics.axis_key("mae", axis) for axis in range(6)) + ("translation_error_mm",
                                                                            "rotation_error_deg")
METRIC_LABELS = {
    **{pose_metrics.axis_key("mae", axis): f"MAE {name} ({unit})"
       for axis, (name, unit) in enumerate(zip(AXIS_NAMES, AXIS_UNITS))},
    "translation_error_mm": "translation error (mm)",
    "rotation_error_deg": "rotation error (deg)",
}


@dataclass
class CrossValidationPlan:
    """What a cross-validation run will do, stored in ``cv_plan.json`` so ``--resume_cv`` can finish it."""

    config: Config
    variants: List[str]
    folds: List[PatientSplit]  # fold i reports folds[i].val; test is the same held-out group in every fold
    inner_val: List[List[str]]  # fold i's checkpoint-selection patients, taken from folds[i].train
    seeds: List[int]
    grouping: Dict[str, str]  # folder -> patient id

    def run_split(self, index: int) -> PatientSplit:
        """The split fold ``index`` trains with: the inner validation patients select the checkpoint, the fold's
        reported patients (and the held-out ones) are its test patients."""
        fold = self.folds[index]
        inner = self.inner_val[index]
        return PatientSplit(train=[p for p in fold.train if p not in inner], val=list(inner),
                            test=sorted(fold.val + fold.test))

    def fold_config(self, variant: str, seed: int) -> Config:
        """The config one fold trains with; ``cv_folds`` is off so its run resumes as an ordinary run."""
        return apply_overrides(self.config, {"model.variant": variant, "data.cv_folds": 0, "training.seed": seed},
                               source="cross-validation")

    def to_dict(self) -> Dict[str, Any]:
        return {"config": self.config.to_dict(), "variants": list(self.variants), "seeds": list(self.seeds),
                "test_patients": list(self.folds[0].test), "folds": [fold.to_dict() for fold in self.folds],
                "inner_val": [list(patients) for patients in self.inner_val], "grouping": dict(self.grouping)}

    @classmethod
    def from_dict(cls, values: Mapping[str, Any], source: str) -> "CrossValidationPlan":
        missing = next((key for key in ("config", "variants", "folds", "inner_val", "seeds", "grouping")
                        if key not in values), None)
        if missing:
            raise ConfigError(f"{source}: not a valid cross-validation plan (it has no {missing!r} entry)")
        try:
            plan = cls(Config.from_stored(values["config"], source=f"{source}: config"), list(values["variants"]),
                       [PatientSplit.from_dict(fold) for fold in values["folds"]],
                       [list(patients) for patients in values["inner_val"]], [int(s) for s in values["seeds"]],
                       dict(values["grouping"]))
        except (KeyError, TypeError, ValueError, DataError) as error:
            raise ConfigError(f"{source}: not a valid cross-validation plan (an entry of the wrong kind: {error})") \
                from None
        names = [*plan.grouping, *plan.grouping.values(), *(name for inner in plan.inner_val for name in inner)]
        valid = (len(plan.folds) >= 2 and plan.variants and set(plan.variants) <= set(VARIANTS) and plan.seeds
                 and len(plan.inner_val) == len(plan.folds) and all(plan.inner_val)
                 and all(isinstance(name, str) for name in names))
        if not valid:
            raise ConfigError(f"{source}: not a valid cross-validation plan (needs >= 2 folds, known variants, "
                              "seeds, an inner validation group per fold and patients named by text)")
        people = set(plan.grouping.values())
        for number, (fold, inner) in enumerate(zip(plan.folds, plan.inner_val), start=1):
            unknown = sorted(set(fold.train + fold.val + fold.test + inner) - people)
            if unknown:
                raise ConfigError(f"{source}: fold {number} names {unknown[0]!r}, not a patient of the plan's "
                                  f"grouping ({len(people)} patients); not a valid cross-validation plan")
            if not set(inner) <= set(fold.train):
                raise ConfigError(f"{source}: fold {number}'s inner validation patients are not among its training "
                                  "patients; not a valid cross-validation plan")
        return plan


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
        _check_same_grouping(plan, cv_dir)
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


def plan_cross_validation(config: Config, compare: bool = False, seeds: int = 1) -> CrossValidationPlan:
    """The folds of ``config``: its patients (grouping-file ids) dealt into ``data.cv_folds`` seeded folds, the
    held-out ``data.test_patients`` (ids or folder names) outside all of them, and in each fold one training
    patient set aside to select the checkpoint on.

    Every patient folder is read and validated here, before anything is written.
    """
    config = with_absolute_paths(config)  # cv_plan.json records where the data is, for --resume_cv from anywhere
    k = config.data.cv_folds
    if k < 2:
        raise ConfigError(f"cross-validation needs data.cv_folds >= 2 (--cv K), got {k}")
    if seeds < 1:
        raise ConfigError(f"cross-validation needs --seeds >= 1, got {seeds}")
    # every folder and every image validated before anything is written
    records, grouping = read_grouped_records(config.data)
    verify_images(records, config.data.image_size)
    folds, inner = cross_validation_folds(k, config.data.split_seed, grouping, config.data.test_patients)
    variants = list(COMPARED_VARIANTS) if compare else [config.model.variant]
    seed_list = [config.training.seed + offset for offset in range(seeds)]
    plan = CrossValidationPlan(config, variants, folds, inner, seed_list, grouping)
    for variant in variants:  # a setting one arm or seed refuses fails now, not after the folds before it trained
        for seed in seed_list:
            plan.fold_config(variant, seed)
    return plan


def _check_same_grouping(plan: CrossValidationPlan, cv_dir: Path) -> None:
    """Refuse to resume when the data's folders or their people have changed since the plan: the folds and
    baselines left to run would read another grouping than the finished ones, and the table would mix the two."""
    _, grouping = read_grouped_records(plan.config.data)
    changed = sorted(set(grouping) ^ set(plan.grouping)) + sorted(
        folder for folder in set(grouping) & set(plan.grouping) if grouping[folder] != plan.grouping[folder])
    if changed:
        folder = changed[0]
        now, then = grouping.get(folder, "no folder"), plan.grouping.get(folder, "no folder")
        raise DataError(f"{cv_dir / PLAN_FILE}: the data changed since this cross-validation started ({folder}: "
                          f"now {now}, then {then}; {len(changed)} folder(s) differ); restore it, or start a new "
                          "--cv")


def read_plan(cv_dir: Path) -> CrossValidationPlan:
    """The plan of an existing cross-validation directory; ConfigError when it is not one."""
    cv_dir = Path(cv_dir)
    if cv_dir.exists() and not cv_dir.is_dir():
        raise ConfigError(f"{cv_dir}: is a file, not a cross-validation directory")
    if not cv_dir.is_dir():
        raise ConfigError(f"{cv_dir}: cross-validation directory not found")
    if not (cv_dir / PLAN_FILE).is_file():
        raise ConfigError(f"{cv_dir}: not a cross-validation directory (no {PLAN_FILE})")
    values = read_json(cv_dir / PLAN_FILE, "cross-validation plan", ConfigError)
    if not isinstance(values, dict):
        raise ConfigError(f"{cv_dir / PLAN_FILE}: not a valid cross-validation plan (expected a JSON object)")
    return CrossValidationPlan.from_dict(values, source=str(cv_dir / PLAN_FILE))


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
        test_metrics = _pick(test_report.metrics["guidance"])
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
        "metrics": _pick(metrics["guidance"]),
        "composed_metrics": _pick(metrics["composed"]) if metrics["composed"] else None,
        "per_patient": {patient: {"samples": entry["samples"], **_pick(entry["guidance"])}
                        for patient, entry in metrics["per_patient"].items()},
        "test_metrics": test_metrics,
    }


def baseline_results(plan: CrossValidationPlan) -> Dict[str, List[Dict[str, Any]]]:
    """The baselines of :mod:`cardiac_dreamer.evaluation.baselines` on every fold and seed, shaped like fold results: trained
    on the same training patients (their labelled ones, in label-scarce runs), selected on the same inner validation
    patient, scored on the same patients."""
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
    return {"metrics": _pick(pose_metrics.summarize(labels, predictions)),
            "per_patient": {patient: {"samples": entry["samples"], **_pick(entry)}
                            for patient, entry in per_patient.items()}}


def _relative(path: Path, cv_dir: Path) -> str:
    """Paths inside the CV directory are stored relative to it, so the directory can be moved."""
    return Path(path).resolve().relative_to(Path(cv_dir).resolve()).as_posix()


def _pick(metrics: Mapping[str, Any]) -> Dict[str, Optional[float]]:
    """The summary metrics of one evaluation; NaN becomes None (JSON has no NaN)."""
    return {key: _finite(metrics.get(key)) for key in METRICS}


def _finite(value: Any) -> Optional[float]:
    return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else None


def summarize(plan: CrossValidationPlan, results: Mapping[str, Sequence[Mapping[str, Any]]]) -> Dict[str, Any]:
    """``cv_summary.json``: per variant and baseline every (fold, seed) run's metrics, their mean ± sample std over
    all runs (one vote per run), the mean over folds of each seed, the held-out test figures, the per-patient table,
    and with both variants the relative change ``(dreamer - direct) / direct`` (negative: the world model wins)."""
    rows = {}
    for variant, runs in results.items():
        votes = [run for run in runs if variant not in SEED_FREE or run["seed"] == plan.seeds[0]]
        entry = {
            "runs": [{"fold": run["fold"], "seed": run["seed"], "reported_patients": _reported(plan, run["fold"]),
                      "inner_val": run["split"]["val"], "samples": run["samples"],
                      **{key: run[key] for key in ("run_dir", "epochs_completed") if key in run},
                      **run["metrics"]} for run in runs],
            **_mean_std([run["metrics"] for run in votes]),
            "per_seed": {str(seed): _mean_std([run["metrics"] for run in runs if run["seed"] == seed])["mean"]
                         for seed in plan.seeds},
        }
        composed = [run["composed_metrics"] for run in runs if run.get("composed_metrics")]
        if composed:
            entry["composed_with_true_move"] = _mean_std(composed)
        tests = [run["test_metrics"] for run in votes if run.get("test_metrics")]
        if tests:
            entry["test"] = _mean_std(tests)
        rows[variant] = entry
    per_patient: Dict[str, Dict[str, Any]] = {}
    for variant, runs in results.items():
        patients = sorted({patient for run in runs for patient in run["per_patient"]})
        for patient in patients:
            scores = [run["per_patient"][patient] for run in runs if patient in run["per_patient"]]
            fold = next(run["fold"] for run in runs if patient in run["per_patient"])
            per_patient.setdefault(patient, {"fold": fold})[variant] = _mean_std(scores)["mean"]
    summary = {
        "folds": len(plan.folds),
        "seeds": list(plan.seeds),
        "variants": list(results),
        "metrics": list(METRICS),
        "headline": "guidance: at1 from the image alone, the fold's checkpoint selected on its inner validation "
                    "patient, scored on the fold's patients",
        "fold_patients": [fold.val for fold in plan.folds],
        "inner_val": plan.inner_val,
        "test_patients": list(plan.folds[0].test),
        "split_seed": plan.config.data.split_seed,
        "results": rows,
        "per_patient": dict(sorted(per_patient.items())),
    }
    if set(COMPARED_VARIANTS) <= set(results):
        summary["comparison"] = {metric: _relative_change(rows["dreamer"]["mean"][metric],
                                                          rows["direct"]["mean"][metric]) for metric in METRICS}
    return summary


def _reported(plan: CrossValidationPlan, fold_number: int) -> List[str]:
    return list(plan.folds[fold_number - 1].val)


def _mean_std(rows: Sequence[Mapping[str, Optional[float]]]) -> Dict[str, Dict[str, Optional[float]]]:
    """Mean and sample standard deviation (ddof 1; 0 for a single value) of each metric, over the finite values."""
    mean, std = {}, {}
    for metric in METRICS:
        values = np.array([row[metric] for row in rows if row.get(metric) is not None], dtype=float)
        mean[metric] = float(values.mean()) if values.size else None
        std[metric] = float(values.std(ddof=1)) if values.size > 1 else (0.0 if values.size else None)
    return {"mean": mean, "std": std}


def _relative_change(dreamer: Optional[float], direct: Optional[float]) -> Optional[float]:
    if dreamer is None or direct is None or direct == 0:
        return None
    return (dreamer - direct) / direct


def run_labels(runs: Sequence[Mapping[str, Any]]) -> List[str]:
    """What to call each run in a figure: ``fold 2``, or ``fold 2 seed 43`` when there are several seeds."""
    several = len({run["seed"] for run in runs}) > 1
    return [f"fold {run['fold']}" + (f"\nseed {run['seed']}" if several else "") for run in runs]


def write_summary(cv_dir: Path, summary: Mapping[str, Any]) -> None:
    """``cv_summary.json``, ``cv_summary.png`` (each run and the mean ± std per metric) and ``cv_summary.txt``."""
    from . import plots  # matplotlib only once there is something to draw: refusals stay quick

    write_json(cv_dir / "cv_summary.json", summary)
    results = summary["results"]
    plots.plot_cv_summary(
        cv_dir / "cv_summary.png",
        {variant: [{metric: run[metric] for metric in METRICS} for run in entry["runs"]]
         for variant, entry in results.items()},
        labels=run_labels(next(iter(results.values()))["runs"]),
        stats={variant: {"mean": entry["mean"], "std": entry["std"]} for variant, entry in results.items()},
    )
    with atomic_open(cv_dir / "cv_summary.txt", "w") as stream:
        stream.write(format_summary(summary) + "\n")
    log.info("cross-validation summary written to %s", cv_dir)


def format_summary(summary: Mapping[str, Any]) -> str:
    """Metric rows of the guidance, a mean ± std column per variant and baseline, the relative change when
    comparing; then the composed prediction (with the true move) for the world model; the same rows on the held-out
    test patients, when there are some; then per patient."""
    variants = summary["variants"]
    results = summary["results"]
    comparison = summary.get("comparison")
    seeds = len(summary["seeds"])
    test = f", held-out test: {', '.join(summary['test_patients'])}" if summary["test_patients"] else ""
    lines = [f"{summary['folds']}-fold cross-patient validation x {seeds} seed{'s' if seeds > 1 else ''}: guidance "
             f"from the image alone, mean ± std over folds x seeds{test}",
             *_metric_table({v: results[v] for v in variants}, comparison)]
    if comparison:
        lines.append("change = (dreamer - direct) / direct; negative means the world model is better")
    composed = results.get("dreamer", {}).get("composed_with_true_move")
    if composed:
        lines.append("dreamer composed with the true t1->t2 move (uses the future move; not guidance): "
                     + ", ".join(f"{METRIC_LABELS[m]} {_mean_std_text(composed['mean'][m], composed['std'][m])}"
                                 for m in ("translation_error_mm", "rotation_error_deg")))
    if any(results[v].get("test") for v in variants):
        lines += ["", f"held-out test patients ({', '.join(summary['test_patients'])}): each run's model scored on "
                      "them, mean ± std over folds x seeds",
                  *_metric_table({v: results[v].get("test") for v in variants})]
    lines.append("")
    lines.append(f"{'patient (fold)':24}" + "".join(f"{v + ' mm / deg':>22}" for v in variants))
    for patient, row in summary["per_patient"].items():
        cells = "".join(f"{_pair_text(row.get(v)):>22}" for v in variants)
        lines.append(f"{patient + ' (' + str(row['fold']) + ')':24}{cells}")
    return "\n".join(lines)


def _metric_table(stats: Mapping[str, Optional[Mapping[str, Any]]],
                  comparison: Optional[Mapping[str, Optional[float]]] = None) -> List[str]:
    """A header and one row per metric: a mean ± std column per variant (``stats[variant]`` holds ``mean`` and
    ``std``; None reads n/a), and the relative change when comparing."""
    lines = [f"{'metric':24}" + "".join(f"{variant:>18}" for variant in stats)
             + (f"{'change':>10}" if comparison else "")]
    for metric in METRICS:
        cells = "".join(f"{_mean_std_text(entry['mean'][metric], entry['std'][metric]) if entry else 'n/a':>18}"
                        for entry in stats.values())
        change = f"{_percent(comparison[metric]):>10}" if comparison else ""
        lines.append(f"{METRIC_LABELS[metric]:24}{cells}{change}")
    return lines


def _mean_std_text(mean: Optional[float], std: Optional[float]) -> str:
    return "n/a" if mean is None else f"{mean:.3f} ± {std:.3f}"


def _percent(value: Optional[float]) -> str:
    return "n/a" if value is None else f"{100 * value:+.1f}%"


def _pair_text(row: Optional[Mapping[str, Optional[float]]]) -> str:
    """Translation and rotation error of one patient, ``"1.23 / 4.56"``."""
    if not row:
        return "n/a"
    values = [row.get("translation_error_mm"), row.get("rotation_error_deg")]
    return " / ".join("n/a" if value is None else f"{value:.2f}" for value in values)
