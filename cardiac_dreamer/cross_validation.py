"""Cross-patient k-fold cross-validation, and the world-model ablation (``dreamer`` vs ``direct``) on the same folds.

One train/val split of a handful of patients says little; k folds validate every patient exactly once. With
``compare`` both model variants train on the same folds with the same seed, so the difference between them is the
world model and nothing else. Layout of ``OUTPUT_DIR/cv_YYYYMMDD_HHMMSS/``::

    cv_plan.json                 resolved config, variants, held-out test patients, each fold's split
    <variant>/fold_<i>/run_*/    an ordinary run directory (checkpoints, logs, plots, val_evaluation/)
    <variant>/fold_<i>/fold_result.json   written last, atomically: the fold is finished (resume skips it)
    cv_summary.json, cv_summary.png, cv_summary.txt

Patients are patient ids (grouping-file groups), so the scans of one person never straddle folds. Held-out test
patients (``data.test_patients``) stay out of every fold and are scored by every fold's model; without them all
patients are in folds and there is no test group. Other manual-split lists are ignored: the folds decide.
"""
from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence

import numpy as np

from . import plots
from .fileio import atomic_open, write_json
from .config import Config, apply_overrides
from .data.prepare import read_grouped_records
from .data.splits import PatientSplit, kfold_splits
from .errors import ConfigError, DataError
from .evaluation import evaluate_checkpoint
from .evaluation.metrics import axis_key
from .pipeline import run_training
from .geometry import AXIS_NAMES, AXIS_UNITS
from .training import distributed as dist
from .run_dir import timestamped_directory

log = logging.getLogger(__name__)

PLAN_FILE = "cv_plan.json"
RESULT_FILE = "fold_result.json"
VARIANTS = ("dreamer", "direct")  # the comparison's order: the world model, then its baseline
METRICS = tuple(axis_key("mae", axis) for axis in range(6)) + ("translation_error_mm", "rotation_error_deg")
METRIC_LABELS = {
    **{axis_key("mae", axis): f"MAE {name} ({unit})" for axis, (name, unit) in enumerate(zip(AXIS_NAMES, AXIS_UNITS))},
    "translation_error_mm": "translation error (mm)",
    "rotation_error_deg": "rotation error (deg)",
}


@dataclass
class CrossValidationPlan:
    """What a cross-validation run will do, stored in ``cv_plan.json`` so ``--resume_cv`` can finish it."""

    config: Config
    variants: List[str]
    folds: List[PatientSplit]  # fold i validates folds[i].val; test is the same held-out group in every fold
    grouping: Dict[str, str]  # folder -> patient id

    def to_dict(self) -> Dict[str, Any]:
        return {"config": self.config.to_dict(), "variants": list(self.variants),
                "test_patients": list(self.folds[0].test), "folds": [fold.to_dict() for fold in self.folds],
                "grouping": dict(self.grouping)}

    @classmethod
    def from_dict(cls, values: Mapping[str, Any], source: str) -> "CrossValidationPlan":
        try:
            variants = list(values["variants"])
            folds = [PatientSplit.from_dict(fold) for fold in values["folds"]]
            plan = cls(Config.from_dict(values["config"], source=f"{source}: config"), variants, folds,
                       dict(values["grouping"]))
        except (KeyError, TypeError, DataError) as error:
            raise ConfigError(f"{source}: not a valid cross-validation plan ({error})") from None
        if len(folds) < 2 or not set(variants) <= set(VARIANTS) or not variants:
            raise ConfigError(f"{source}: not a valid cross-validation plan (needs >= 2 folds and known variants)")
        return plan

    def fold_config(self, variant: str) -> Config:
        """The config one fold trains with; ``cv_folds`` is off so its run resumes as an ordinary run."""
        return apply_overrides(self.config, {"model.variant": variant, "data.cv_folds": 0}, source="cross-validation")


@dataclass
class CrossValidationResult:
    """The finished cross-validation: where it is and the content of ``cv_summary.json``."""

    cv_dir: Path
    summary: Dict[str, Any]

    def summary_table(self) -> str:
        return format_summary(self.summary)


def run_cross_validation(
    config: Config,
    output_dir: Optional[Path] = None,
    compare: bool = False,
    resume_dir: Optional[Path] = None,
    argv: Optional[Sequence[str]] = None,
    progress: bool = True,
) -> CrossValidationResult:
    """Train and validate every fold (of both variants with ``compare``), then write the summary.

    A new run plans the folds from ``config`` (``data.cv_folds``, ``data.split_seed``) in a new
    ``output_dir/cv_YYYYMMDD_HHMMSS``. ``resume_dir`` continues such a directory with its stored plan (``config``
    and ``compare`` are then ignored): finished folds are kept, an unfinished one continues from its
    ``last.ckpt`` when it has one, else starts again.
    """
    if dist.launched_by_torchrun():
        raise ConfigError("cross-validation runs in one process; launch cardiac-train without torchrun")
    if resume_dir is not None:
        cv_dir = Path(resume_dir)
        plan = read_plan(cv_dir)
        log.info("resuming cross-validation %s", cv_dir)
    else:
        plan = plan_cross_validation(config, compare)
        if output_dir is None:
            raise ConfigError("an output directory is needed for a new cross-validation run")
        cv_dir = timestamped_directory(Path(output_dir), "cv")
        write_json(cv_dir / PLAN_FILE, {**plan.to_dict(), "command_line": list(argv or []),
                                        "created": time.strftime("%Y-%m-%dT%H:%M:%S")})
    results: Dict[str, List[Dict[str, Any]]] = {variant: [] for variant in plan.variants}
    for index in range(len(plan.folds)):
        for variant in plan.variants:
            results[variant].append(_finished_or_run_fold(plan, cv_dir, variant, index, argv, progress))
    summary = summarize(plan, results)
    write_summary(cv_dir, summary)
    return CrossValidationResult(cv_dir, summary)


def plan_cross_validation(config: Config, compare: bool = False) -> CrossValidationPlan:
    """The folds of ``config``: its patients (grouping-file ids) dealt into ``data.cv_folds`` seeded folds, the
    held-out ``data.test_patients`` (ids or folder names) outside all of them.

    Every patient folder is read and validated here, before anything is written.
    """
    k = config.data.cv_folds
    if k < 2:
        raise ConfigError(f"cross-validation needs data.cv_folds >= 2 (--cv K), got {k}")
    _, grouping = read_grouped_records(config.data)  # reads and validates every folder before anything is written
    patients = sorted(set(grouping.values()))
    test = [name if name in patients else grouping.get(name, name) for name in config.data.test_patients]
    folds = kfold_splits(patients, k, seed=config.data.split_seed, test=test)
    variants = list(VARIANTS) if compare else [config.model.variant]
    return CrossValidationPlan(config, variants, folds, grouping)


def read_plan(cv_dir: Path) -> CrossValidationPlan:
    """The plan of an existing cross-validation directory; ConfigError when it is not one."""
    cv_dir = Path(cv_dir)
    if not cv_dir.is_dir():
        raise ConfigError(f"{cv_dir}: cross-validation directory not found")
    path = cv_dir / PLAN_FILE
    if not path.is_file():
        raise ConfigError(f"{cv_dir}: not a cross-validation directory (no {PLAN_FILE})")
    try:
        values = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ConfigError(f"{path}: cannot read the cross-validation plan ({error})") from None
    if not isinstance(values, dict):
        raise ConfigError(f"{path}: not a valid cross-validation plan (expected a JSON object)")
    return CrossValidationPlan.from_dict(values, source=str(path))


def fold_dir(cv_dir: Path, variant: str, index: int) -> Path:
    """``cv_dir/<variant>/fold_<index + 1>``: folds are numbered from 1 for people."""
    return Path(cv_dir) / variant / f"fold_{index + 1}"


def _finished_or_run_fold(plan: CrossValidationPlan, cv_dir: Path, variant: str, index: int,
                          argv: Optional[Sequence[str]], progress: bool) -> Dict[str, Any]:
    directory = fold_dir(cv_dir, variant, index)
    result_path = directory / RESULT_FILE
    if result_path.is_file():
        log.info("%s fold %d already finished: %s", variant, index + 1, result_path)
        try:
            return json.loads(result_path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
            raise DataError(f"{result_path}: cannot read the fold result ({error}); delete it to redo the fold") \
                from None
    log.info("%s fold %d of %d: validating on %s", variant, index + 1, len(plan.folds),
             ", ".join(plan.folds[index].val))
    result = run_fold(plan, cv_dir, variant, index, argv, progress)
    write_json(result_path, result)
    return result


def run_fold(plan: CrossValidationPlan, cv_dir: Path, variant: str, index: int,
             argv: Optional[Sequence[str]] = None, progress: bool = True) -> Dict[str, Any]:
    """Train one fold into its :func:`fold_dir` (or continue its stopped run) and score the best checkpoint on the
    fold's validation patients in mm and degrees; the content of ``fold_result.json``."""
    directory = fold_dir(cv_dir, variant, index)
    config = plan.fold_config(variant)
    split = plan.folds[index]
    stopped = sorted(directory.glob("run_*/checkpoints/last.ckpt"))
    if stopped:
        log.info("continuing the stopped run %s", stopped[-1])
        outcome = run_training(config, resume_from=stopped[-1], argv=argv, progress=progress)
    else:
        outcome = run_training(config, output_dir=directory, split=split, argv=argv, progress=progress)
    checkpoint = outcome.fit.best_checkpoint or outcome.fit.final_model
    report, _ = evaluate_checkpoint(checkpoint, split="val", output_dir=outcome.run_dir / "val_evaluation",
                                    batch_size=config.training.batch_size, device=config.training.device,
                                    progress=progress)
    metrics = report.metrics
    test_metrics = None
    if outcome.test_evaluation_dir is not None:
        test_metrics = _pick(json.loads((outcome.test_evaluation_dir / "metrics.json").read_text())["guidance"])
    return {
        "variant": variant,
        "fold": index + 1,
        "split": split.to_dict(),
        "run_dir": _relative(outcome.run_dir, cv_dir),
        "checkpoint": _relative(checkpoint, cv_dir),
        "epochs_completed": outcome.fit.epochs_completed,
        "stop_reason": outcome.fit.stop_reason,
        "samples": metrics["samples"],
        "metrics": _pick(metrics["guidance"]),
        "per_patient": {patient: {"samples": entry["samples"], **_pick(entry["guidance"])}
                        for patient, entry in metrics["per_patient"].items()},
        "test_metrics": test_metrics,
    }


def _relative(path: Path, cv_dir: Path) -> str:
    """Paths inside the CV directory are stored relative to it, so the directory can be moved."""
    return Path(path).resolve().relative_to(Path(cv_dir).resolve()).as_posix()


def _pick(metrics: Mapping[str, Any]) -> Dict[str, Optional[float]]:
    """The summary metrics of one evaluation task; NaN becomes None (JSON has no NaN)."""
    return {key: _finite(metrics.get(key)) for key in METRICS}


def _finite(value: Any) -> Optional[float]:
    return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else None


def summarize(plan: CrossValidationPlan, results: Mapping[str, Sequence[Mapping[str, Any]]]) -> Dict[str, Any]:
    """``cv_summary.json``: per variant each fold's metrics and their mean ± sample std over folds (unweighted:
    one vote per fold), the per-patient table, and with two variants the relative change
    ``(dreamer - direct) / direct`` of the means (negative: the world model is better)."""
    variants = {}
    for variant, folds in results.items():
        entry = {
            "folds": [{"fold": fold["fold"], "val_patients": fold["split"]["val"], "run_dir": fold["run_dir"],
                       "epochs_completed": fold["epochs_completed"], "samples": fold["samples"],
                       **fold["metrics"]} for fold in folds],
            **_mean_std([fold["metrics"] for fold in folds]),
        }
        tests = [fold["test_metrics"] for fold in folds if fold.get("test_metrics")]
        if tests:
            entry["test"] = _mean_std(tests)
        variants[variant] = entry
    per_patient: Dict[str, Dict[str, Any]] = {}
    for variant, folds in results.items():
        for fold in folds:
            for patient, row in fold["per_patient"].items():
                per_patient.setdefault(patient, {"fold": fold["fold"]})[variant] = row
    summary = {
        "folds": len(plan.folds),
        "variants": list(results),
        "metrics": list(METRICS),
        "fold_patients": [fold.val for fold in plan.folds],
        "test_patients": list(plan.folds[0].test),
        "seed": plan.config.training.seed,
        "split_seed": plan.config.data.split_seed,
        "results": variants,
        "per_patient": dict(sorted(per_patient.items())),
    }
    if set(VARIANTS) <= set(results):
        summary["comparison"] = {metric: _relative_change(variants["dreamer"]["mean"][metric],
                                                          variants["direct"]["mean"][metric]) for metric in METRICS}
    return summary


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


def write_summary(cv_dir: Path, summary: Mapping[str, Any]) -> None:
    """``cv_summary.json``, ``cv_summary.png`` (each fold and the mean ± std per metric) and ``cv_summary.txt``."""
    write_json(cv_dir / "cv_summary.json", summary)
    plots.plot_cv_summary(cv_dir / "cv_summary.png", {
        variant: [{metric: fold[metric] for metric in METRICS} for fold in entry["folds"]]
        for variant, entry in summary["results"].items()
    })
    with atomic_open(cv_dir / "cv_summary.txt", "w") as stream:
        stream.write(format_summary(summary) + "\n")
    log.info("cross-validation summary written to %s", cv_dir)


def format_summary(summary: Mapping[str, Any]) -> str:
    """Metric rows, a mean ± std column per variant, the relative change when comparing; then per patient."""
    variants = summary["variants"]
    comparison = summary.get("comparison")
    test = f", held-out test: {', '.join(summary['test_patients'])}" if summary["test_patients"] else ""
    lines = [f"{summary['folds']}-fold cross-patient validation, mean ± std over folds{test}",
             f"{'metric':24}" + "".join(f"{variant:>18}" for variant in variants)
             + (f"{'change':>10}" if comparison else "")]
    results = summary["results"]
    for metric in METRICS:
        cells = "".join(f"{_mean_std_text(results[v]['mean'][metric], results[v]['std'][metric]):>18}" for v in variants)
        change = f"{_percent(comparison[metric]):>10}" if comparison else ""
        lines.append(f"{METRIC_LABELS[metric]:24}{cells}{change}")
    if comparison:
        lines.append("change = (dreamer - direct) / direct; negative means the world model is better")
    lines.append("")
    lines.append(f"{'patient (fold)':24}" + "".join(f"{v + ' mm / deg':>18}" for v in variants))
    for patient, row in summary["per_patient"].items():
        cells = "".join(f"{_pair_text(row.get(v)):>18}" for v in variants)
        lines.append(f"{patient + ' (' + str(row['fold']) + ')':24}{cells}")
    return "\n".join(lines)


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
