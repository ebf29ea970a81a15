"""Scores of guidance episodes, from the *true* poses, with 95 % intervals over episodes.

Rates get Wilson score intervals (right near 0 % and 100 %, where the normal approximation gives impossible
bounds); means get percentile bootstrap intervals (2000 resamples of the episodes, fixed seed): final errors and
path lengths are skewed and bounded below, so a symmetric t interval would misstate them.
"""
from __future__ import annotations

import math
from typing import Any, Dict, List, Sequence

import numpy as np

from ..evaluation.metrics import rotation_errors, translation_errors
from ..session import within
from .simulator import Episode

SUCCESS_THRESHOLDS = (5.0, 10.0)  # mm and degrees, per component
Z_95 = 1.959963984540054
BOOTSTRAP_RESAMPLES = 2000
BOOTSTRAP_SEED = 0
CURVE_THRESHOLDS = np.linspace(0.0, 30.0, 121)  # mm and degrees, for the success-vs-threshold curve

DEFINITIONS = {
    "success_5": "fraction of episodes whose true final pose has |x|, |y|, |z| <= 5 mm and |roll|, |pitch|, |yaw| "
    "<= 5 degrees (every component), whether or not the policy said 'arrived'",
    "success_10": "the same within 10 mm / 10 degrees",
    "arrival_declared": "fraction of episodes that ended with the policy saying 'arrived' (the others used up "
    "max_steps)",
    "false_arrival": "of the episodes that ended with 'arrived', the fraction whose true final pose was not within "
    "5 mm / 5 degrees; null when no episode said 'arrived'",
    "final_translation_error_mm": "mean Euclidean distance of the true final (x, y, z) from the view",
    "final_rotation_error_deg": "mean geodesic angle between the true final orientation and the view's",
    "steps_to_success": "mean number of moves executed, over the episodes that succeeded at 5 mm / 5 degrees; null "
    "when none did",
    "path_length_mm": "mean over episodes of the summed Euclidean length of the executed moves' translations",
    "path_length_deg": "mean over episodes of the summed rotation angles of the executed moves",
    "interval": "95 %: Wilson score interval for rates, percentile bootstrap over episodes (2000 resamples) for "
    "means; [low, high]",
    "success_curve": "success rate vs a threshold t applied as t mm and t degrees to every component of the true "
    "final pose",
}


def episode_scores(episode: Episode) -> Dict[str, Any]:
    """The per-episode numbers every aggregate is built from."""
    final = episode.final_pose[None]  # [1, 6]
    view = np.zeros_like(final)
    moves = episode.executed_moves  # [M, 6]
    nothing = np.zeros_like(moves)
    success = {f"success_{threshold:g}": bool(within(final[0], threshold, threshold))
               for threshold in SUCCESS_THRESHOLDS}
    return {
        **success,
        "said_arrived": episode.said_arrived,
        "moves": len(moves),
        "final_translation_error_mm": float(translation_errors(view, final)[0]),
        "final_rotation_error_deg": float(rotation_errors(view, final)[0]),
        "path_length_mm": float(translation_errors(nothing, moves).sum()) if len(moves) else 0.0,
        "path_length_deg": float(rotation_errors(nothing, moves).sum()) if len(moves) else 0.0,
    }


def summarize(episodes: Sequence[Episode]) -> Dict[str, Any]:
    """Every metric of :data:`DEFINITIONS` over ``episodes`` (one policy; any patients)."""
    scores = [episode_scores(episode) for episode in episodes]

    def column(key: str) -> np.ndarray:  # [episodes]
        return np.array([score[key] for score in scores], dtype=np.float64)

    first_success = f"success_{SUCCESS_THRESHOLDS[0]:g}"
    declared = column("said_arrived").astype(bool)
    succeeded = column(first_success).astype(bool)
    summary: Dict[str, Any] = {"episodes": len(scores)}
    for threshold in SUCCESS_THRESHOLDS:
        summary[f"success_{threshold:g}"] = rate(column(f"success_{threshold:g}"))
    summary["arrival_declared"] = rate(declared)
    summary["false_arrival"] = rate(~succeeded[declared])
    for key in ("final_translation_error_mm", "final_rotation_error_deg"):
        summary[key] = mean(column(key))
    summary["steps_to_success"] = mean(column("moves")[succeeded])
    for key in ("path_length_mm", "path_length_deg"):
        summary[key] = mean(column(key))
    summary["success_curve"] = success_curve(np.array([episode.final_pose for episode in episodes]))
    return summary


def summarize_by_patient(episodes: Sequence[Episode]) -> Dict[str, Dict[str, Any]]:
    patients = sorted({episode.patient for episode in episodes})
    return {patient: summarize([e for e in episodes if e.patient == patient]) for patient in patients}


def success_curve(final_poses: np.ndarray) -> Dict[str, List[float]]:
    """``{"threshold": [...], "success": [...]}``: the success rate at each of :data:`CURVE_THRESHOLDS`."""
    finals = np.asarray(final_poses, dtype=np.float64).reshape(-1, 6)
    rates = [float(within(finals, t, t).mean()) if len(finals) else 0.0 for t in CURVE_THRESHOLDS]
    return {"threshold": CURVE_THRESHOLDS.tolist(), "success": rates}


def rate(outcomes: np.ndarray) -> Dict[str, Any]:
    """``{"value", "count", "n", "interval"}`` of boolean outcomes; value and interval null when n is 0."""
    outcomes = np.asarray(outcomes, dtype=bool)
    n, count = int(outcomes.size), int(outcomes.sum())
    if n == 0:
        return {"value": None, "count": 0, "n": 0, "interval": None}
    return {"value": count / n, "count": count, "n": n, "interval": list(wilson_interval(count, n))}


def mean(values: np.ndarray) -> Dict[str, Any]:
    """``{"value", "n", "interval"}`` of a mean over episodes; value and interval null when n is 0."""
    values = np.asarray(values, dtype=np.float64)
    if values.size == 0:
        return {"value": None, "n": 0, "interval": None}
    return {"value": float(values.mean()), "n": int(values.size), "interval": list(bootstrap_interval(values))}


def wilson_interval(count: int, n: int, z: float = Z_95) -> tuple[float, float]:
    """The Wilson score interval of ``count`` successes in ``n`` trials."""
    p = count / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    low = 0.0 if count == 0 else centre - half  # exact ends: rounding leaves 1e-17 where the bound is 0
    high = 1.0 if count == n else centre + half
    return low, high


def bootstrap_interval(values: np.ndarray, resamples: int = BOOTSTRAP_RESAMPLES) -> tuple[float, float]:
    """The 2.5 and 97.5 percentiles of the mean over resampled episodes (one value: the value itself)."""
    rng = np.random.default_rng(BOOTSTRAP_SEED)
    means = values[rng.integers(0, len(values), (resamples, len(values)))].mean(1)  # [resamples]
    low, high = np.percentile(means, [2.5, 97.5])
    return float(low), float(high)
