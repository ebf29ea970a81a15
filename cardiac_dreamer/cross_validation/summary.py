"""The cross-validation's summary: every run's figures, their mean and std over folds x seeds, the comparison of
the two variants, per patient; written as ``cv_summary.json``, ``.png`` and ``.txt``."""
from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence

import numpy as np

from ..evaluation import metrics as pose_metrics
from ..evaluation.baselines import SEED_FREE
from ..geometry import AXIS_NAMES, AXIS_UNITS
from ..io.fileio import atomic_open, write_json
from .plan import COMPARED_VARIANTS, CrossValidationPlan

log = logging.getLogger(__name__)

METRICS = tuple(pose_metrics.axis_key("mae", axis) for axis in range(6)) + ("translation_error_mm",
                                                                            "rotation_error_deg")
METRIC_LABELS = {
    **{pose_metrics.axis_key("mae", axis): f"MAE {name} ({unit})"
       for axis, (name, unit) in enumerate(zip(AXIS_NAMES, AXIS_UNITS))},
    "translation_error_mm": "translation error (mm)",
    "rotation_error_deg": "rotation error (deg)",
}


def summary_metrics(metrics: Mapping[str, Any]) -> Dict[str, Optional[float]]:
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
    from .. import plots  # matplotlib only once there is something to draw: refusals stay quick

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
