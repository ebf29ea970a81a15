"""Scores of guidance episodes, from the *true* poses, with 95 % intervals that respect how episodes were drawn.

Episodes share patients (episode ``i`` runs on patient ``i mod P``), so they are not independent: a model that
fails on one heart fails on all its episodes. Intervals therefore come from a **hierarchical bootstrap**: resample
the patients, then each drawn patient's episodes (2000 resamples, fixed seed); with one patient it is the ordinary
bootstrap over episodes. Final errors and path lengths are skewed and bounded below, so a symmetric t interval would
misstate them. A rate's interval is the union of that bootstrap's and the Wilson score interval: Wilson stays right
near 0 % and 100 % (where a bootstrap of all-successes is the single point 100 %), the bootstrap widens it when
patients differ.

Policies meet the same episodes (same starts, speckle and hand), so they are compared **paired**
(:func:`paired_differences`): per episode, A's outcome minus B's, averaged, with the same hierarchical bootstrap
over the episodes' differences: far narrower than comparing two unpaired intervals.
"""
from __future__ import annotations

import math
from typing import Any, Dict, List, Sequence

import numpy as np

from ...evaluation.metrics import rotation_errors, translation_errors
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
    "steps_to_success": "mean number of (non-zero) moves executed, over the episodes that succeeded at 5 mm / 5 "
    "degrees; null when none did; holding still for another look is not a move but uses a frame of max_steps",
    "path_length_mm": "mean over episodes of the summed Euclidean length of the executed moves' translations",
    "path_length_deg": "mean over episodes of the summed rotation angles of the executed moves",
    "interval": "95 %, [low, high]: percentile bootstrap resampling patients, then each patient's episodes (2000 "
    "resamples); for rates, its union with the Wilson score interval",
    "false_arrival_of_episodes": "fraction of all episodes that ended with 'arrived' while the true final pose was "
    "not within 5 mm / 5 degrees (a per-episode outcome, so policies can be compared paired)",
    "paired": "each model policy against 'mean' (one move by minus the training mean, no image read), then per pair "
    "of model policies 'A - B': the mean over the same episodes of A's outcome minus B's, with the hierarchical "
    "bootstrap interval of that mean; rates as fractions (0.1 = 10 points)",
    "starts": "episodes split by whether the start pose lay inside the training poses' range on every axis "
    "(training_range); each group summarized like overall",
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
        "false_arrival_of_episodes": episode.said_arrived and not success[f"success_{SUCCESS_THRESHOLDS[0]:g}"],
        "moves": int(moves.any(-1).sum()),  # a zero move (holding still for another look) is no move
        "final_translation_error_mm": float(translation_errors(view, final)[0]),
        "final_rotation_error_deg": float(rotation_errors(view, final)[0]),
        "path_length_mm": float(translation_errors(nothing, moves).sum()) if len(moves) else 0.0,
        "path_length_deg": float(rotation_errors(nothing, moves).sum()) if len(moves) else 0.0,
    }


def summarize(episodes: Sequence[Episode]) -> Dict[str, Any]:
    """Every metric of :data:`DEFINITIONS` over ``episodes`` (one policy; any patients)."""
    scores = [episode_scores(episode) for episode in episodes]
    patients = np.array([episode.patient for episode in episodes])

    def column(key: str) -> np.ndarray:  # [episodes]
        return np.array([score[key] for score in scores], dtype=np.float64)

    def rate(outcomes: np.ndarray, chosen: slice | np.ndarray = slice(None)) -> Dict[str, Any]:
        return rate_of(np.asarray(outcomes)[chosen], patients[chosen])

    def mean(values: np.ndarray, chosen: slice | np.ndarray = slice(None)) -> Dict[str, Any]:
        return mean_of(np.asarray(values)[chosen], patients[chosen])

    first_success = f"success_{SUCCESS_THRESHOLDS[0]:g}"
    declared = column("said_arrived").astype(bool)
    succeeded = column(first_success).astype(bool)
    summary: Dict[str, Any] = {"episodes": len(scores)}
    for threshold in SUCCESS_THRESHOLDS:
        summary[f"success_{threshold:g}"] = rate(column(f"success_{threshold:g}"))
    summary["arrival_declared"] = rate(declared)
    summary["false_arrival"] = rate(~succeeded, declared)
    summary["false_arrival_of_episodes"] = rate(column("false_arrival_of_episodes"))
    for key in ("final_translation_error_mm", "final_rotation_error_deg"):
        summary[key] = mean(column(key))
    summary["steps_to_success"] = mean(column("moves"), succeeded)
    for key in ("path_length_mm", "path_length_deg"):
        summary[key] = mean(column(key))
    summary["success_curve"] = success_curve(np.array([episode.final_pose for episode in episodes]))
    return summary


def summarize_by_patient(episodes: Sequence[Episode]) -> Dict[str, Dict[str, Any]]:
    patients = sorted({episode.patient for episode in episodes})
    return {patient: summarize([e for e in episodes if e.patient == patient]) for patient in patients}


PAIRED_KEYS = ("success_5", "success_10", "false_arrival_of_episodes", "final_translation_error_mm",
               "final_rotation_error_deg", "moves")


def paired_differences(first: Sequence[Episode], second: Sequence[Episode]) -> Dict[str, Any]:
    """``{"episodes": n, key: {"value", "n", "interval"}}``: the mean over episodes of ``first``'s outcome minus
    ``second``'s, the two policies' episodes matched by episode number (they met the same start, speckle and
    hand)."""
    by_number = {episode.number: episode for episode in second}
    pairs = [(episode, by_number[episode.number]) for episode in first if episode.number in by_number]
    patients = np.array([episode.patient for episode, _ in pairs])
    scores = [(episode_scores(a), episode_scores(b)) for a, b in pairs]
    return {"episodes": len(pairs), **{
        key: mean_of(np.array([float(a[key]) - float(b[key]) for a, b in scores]), patients) for key in PAIRED_KEYS}}


def success_curve(final_poses: np.ndarray) -> Dict[str, List[float]]:
    """``{"threshold": [...], "success": [...]}``: the success rate at each of :data:`CURVE_THRESHOLDS`."""
    finals = np.asarray(final_poses, dtype=np.float64).reshape(-1, 6)
    rates = [float(within(finals, t, t).mean()) if len(finals) else 0.0 for t in CURVE_THRESHOLDS]
    return {"threshold": CURVE_THRESHOLDS.tolist(), "success": rates}


def rate_of(outcomes: np.ndarray, patients: np.ndarray) -> Dict[str, Any]:
    """``{"value", "count", "n", "interval"}`` of boolean outcomes; value and interval null when n is 0."""
    outcomes = np.asarray(outcomes, dtype=bool)
    n, count = int(outcomes.size), int(outcomes.sum())
    if n == 0:
        return {"value": None, "count": 0, "n": 0, "interval": None}
    wilson = wilson_interval(count, n)
    resampled = hierarchical_bootstrap_interval(outcomes.astype(np.float64), patients)
    interval = [min(wilson[0], resampled[0]), max(wilson[1], resampled[1])]
    return {"value": count / n, "count": count, "n": n, "interval": interval}


def mean_of(values: np.ndarray, patients: np.ndarray) -> Dict[str, Any]:
    """``{"value", "n", "interval"}`` of a mean over episodes; value and interval null when n is 0."""
    values = np.asarray(values, dtype=np.float64)
    if values.size == 0:
        return {"value": None, "n": 0, "interval": None}
    return {"value": float(values.mean()), "n": int(values.size),
            "interval": list(hierarchical_bootstrap_interval(values, patients))}


def wilson_interval(count: int, n: int, z: float = Z_95) -> tuple[float, float]:
    """The Wilson score interval of ``count`` successes in ``n`` trials."""
    p = count / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    low = 0.0 if count == 0 else centre - half  # exact ends: rounding leaves 1e-17 where the bound is 0
    high = 1.0 if count == n else centre + half
    return low, high


def hierarchical_bootstrap_interval(values: np.ndarray, groups: np.ndarray,
                                    resamples: int = BOOTSTRAP_RESAMPLES) -> tuple[float, float]:
    """The 2.5 and 97.5 percentiles of the mean over resamples that draw the groups (patients) with replacement,
    then each drawn group's values (episodes) with replacement. One group: the bootstrap over values."""
    values, groups = np.asarray(values, dtype=np.float64), np.asarray(groups)
    rng = np.random.default_rng(BOOTSTRAP_SEED)
    members = [values[groups == group] for group in np.unique(groups)]
    drawn = rng.integers(0, len(members), (resamples, len(members)))  # [resamples, groups]: the patients drawn
    sums, counts = np.zeros(resamples), np.zeros(resamples)
    for slot in range(len(members)):
        for index, member in enumerate(members):
            rows = np.flatnonzero(drawn[:, slot] == index)
            sums[rows] += member[rng.integers(0, len(member), (len(rows), len(member)))].sum(1)
            counts[rows] += len(member)
    low, high = np.percentile(sums / counts, [2.5, 97.5])
    return float(low), float(high)
