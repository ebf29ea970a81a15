"""How much could fusing a session's history help, on an evaluation's own predictions?

    python benchmarks/history_bound.py RUN/test_evaluation/predictions.csv DATA_DIR [--frames 2,4,8] [--fitted] \
        [--stats RUN/dataset_stats.json]

Each evaluated pair's image-only estimate is carried to the present frame by the pose change since (known to a
session as the moves it made; here the labels' difference), and the last K estimates of a sweep are averaged. This
fusion removes the error that changes from frame to frame and keeps the error a stretch of the sweep shares; a learned
sequential estimator that reads only those K estimates and moves has little more to work with. Prints, per patient
and K, the fused MAE over the single frame's (per axis, and translation / rotation error), and the lag-1
autocorrelation of the single-frame errors (near 1: the error repeats from frame to frame, history cannot average it).

With ``--stats RUN/dataset_stats.json`` it also tries undoing the estimator's shrinkage: a model that reads deviations
smaller than they are (``benchmarks/axis_response.py``) reads known moves smaller too, so each axis' gain is measured
on the last K estimates against the moves between them (pulled toward 1 by a prior worth ``PRIOR_FRAMES`` frames one
training std from the rest) and the estimate is stretched away from the training mean by its inverse.

With ``--fitted`` it also bounds any learned fusion that weighs the K carried estimates linearly: per axis, the
current estimate's correction is regressed on how far each earlier carried estimate lies from it, fitted on one half
of the same patient's sweep and scored on the other (both ways), with the best of ``PENALTIES``. A fuser trained on
other patients cannot know this patient better than its own other half does.
"""
from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

import numpy as np

from cardiac_dreamer.cli.common import run_script
from cardiac_dreamer.geometry import AXIS_NAMES, AXIS_UNITS
from cardiac_dreamer.names import TRANSITIONS_FILE

COLUMNS = tuple(f"{axis}_{unit}" for axis, unit in zip(AXIS_NAMES, AXIS_UNITS))  # predictions.csv: label_x_mm...
PRIOR_FRAMES = 2.0  # the gain prior's weight, in frames one training std from the rest
GAIN_RANGE = (0.3, 1.5)  # a measured gain outside this is noise, not the model
# --fitted's ridge penalties (toward the frame alone), per input's sum of squares
PENALTIES = (0.0, 0.01, 0.1, 1.0, 10.0)


def fused_errors(labels: np.ndarray, estimates: np.ndarray, frames: int) -> np.ndarray:
    """``[n, 6]`` errors of the mean of the last ``frames`` estimates (fewer at the start), each carried to the
    present by the true pose change; rows in sweep order."""
    errors = estimates - labels
    return np.stack([errors[max(0, i - frames + 1): i + 1].mean(0) for i in range(len(errors))])


def gain_calibrated(labels: np.ndarray, estimates: np.ndarray, frames: int, mean: np.ndarray,
                    std: np.ndarray) -> np.ndarray:
    """``[n, 6]`` estimates stretched from the training ``mean`` by 1 / the gain each axis showed over the last
    ``frames`` estimates against the true pose changes between them; rows in sweep order."""
    calibrated = np.empty_like(estimates)
    for i in range(len(estimates)):
        start = max(0, i - frames + 1)
        change = labels[start: i + 1] - labels[i]  # where each look was, relative to now (minus the moves since)
        looks = estimates[start: i + 1]
        centred = change - change.mean(0)
        prior = PRIOR_FRAMES * std**2
        gain = ((centred * (looks - looks.mean(0))).sum(0) + prior) / ((centred**2).sum(0) + prior)
        gain = np.clip(gain, *GAIN_RANGE)
        now = looks.mean(0) - gain * change.mean(0)  # the looks' line at "no change": the fused estimate of now
        calibrated[i] = mean + (now - mean) / gain
    return calibrated


def half_fitted_errors(labels: np.ndarray, estimates: np.ndarray, frames: int) -> np.ndarray:
    """``[n - frames + 1, len(PENALTIES), 6]`` errors, per penalty, of the current estimate corrected by a linear
    fusion of the ``frames - 1`` earlier carried estimates fitted on the other half of the rows (the rows with a full
    history, in sweep order)."""
    carried = np.stack([estimates[i - frames + 1: i + 1] - labels[i - frames + 1: i + 1] + labels[i]
                        for i in range(frames - 1, len(labels))])  # [m, frames, 6], the current frame last
    current = carried[:, -1]
    spread = carried[:, :-1] - current[:, None]  # [m, frames - 1, 6]: each earlier look's offset from now
    now = labels[frames - 1:]
    target = now - current  # the correction the current estimate needs
    first = np.arange(len(current)) < len(current) // 2
    errors = np.empty((len(PENALTIES),) + current.shape)
    for p, penalty in enumerate(PENALTIES):
        for fit in (first, ~first):
            for axis in range(6):
                inputs = spread[fit, :, axis]
                gram = inputs.T @ inputs
                weights = np.linalg.lstsq(gram + penalty * np.trace(gram) / len(gram) * np.eye(len(gram)),
                                          inputs.T @ target[fit, axis], rcond=None)[0]  # a short half: singular
                errors[p, ~fit, axis] = current[~fit, axis] + spread[~fit, :, axis] @ weights - now[~fit, axis]
    return errors.transpose(1, 0, 2)


def _norm_ratio(fused: np.ndarray, single: np.ndarray, axes: slice) -> float:
    return float(np.linalg.norm(fused[:, axes], axis=1).mean() / np.linalg.norm(single[:, axes], axis=1).mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("predictions", type=Path, help="predictions.csv of a cardiac-evaluate run")
    parser.add_argument("data_dir", type=Path, help="the patient folders (for the frame numbers of each pair)")
    parser.add_argument("--frames", default="2,4,8", help="history lengths K to fuse, comma-separated")
    parser.add_argument("--stats", type=Path, help="the run's dataset_stats.json: also undo the gain (above)")
    parser.add_argument("--fitted", action="store_true", help="also the best linear fusion fitted on the other "
                        "half of the same patient (above)")
    args = parser.parse_args()
    pose_stats = json.loads(args.stats.read_text())["normalization"]["pose"] if args.stats else None
    with open(args.predictions, newline="") as stream:
        rows = list(csv.DictReader(stream))
    for patient in sorted({row["patient_id"] for row in rows}):
        mine = [row for row in rows if row["patient_id"] == patient]
        entries = json.loads((args.data_dir / mine[0]["folder"] / TRANSITIONS_FILE).read_text())
        mine.sort(key=lambda row: entries[int(row["entry_index"])]["frame_t1"])
        labels = np.array([[float(row[f"label_{column}"]) for column in COLUMNS] for row in mine])
        estimates = np.array([[float(row[f"guidance_{column}"]) for column in COLUMNS] for row in mine])
        single = estimates - labels
        lag1 = [np.corrcoef(single[:-1, axis], single[1:, axis])[0, 1] for axis in range(6)]
        print(f"{patient}: {len(mine)} pairs; single-frame errors' lag-1 autocorrelation "
              + ", ".join(f"{name} {value:.2f}" for name, value in zip(AXIS_NAMES, lag1)))
        for frames in (int(value) for value in args.frames.split(",")):
            fused = fused_errors(labels, estimates, frames)
            per_axis = np.abs(fused).mean(0) / np.abs(single).mean(0)
            print(f"  mean of the last {frames} carried estimates / single frame: "
                  + ", ".join(f"{name} {value:.2f}" for name, value in zip(AXIS_NAMES, per_axis))
                  + f"; translation error {_norm_ratio(fused, single, slice(0, 3)):.2f}x,"
                  f" rotation error {_norm_ratio(fused, single, slice(3, 6)):.2f}x")
            if pose_stats:
                stretched = gain_calibrated(labels, estimates, frames, np.array(pose_stats["mean"]),
                                            np.array(pose_stats["std"])) - labels
                per_axis = np.abs(stretched).mean(0) / np.abs(single).mean(0)
                print("  the same with the gain undone / single frame: "
                      + ", ".join(f"{name} {value:.2f}" for name, value in zip(AXIS_NAMES, per_axis))
                      + f"; translation error {_norm_ratio(stretched, single, slice(0, 3)):.2f}x,"
                      f" rotation error {_norm_ratio(stretched, single, slice(3, 6)):.2f}x")
            if args.fitted and frames > 1:
                fitted = half_fitted_errors(labels, estimates, frames)  # [m, penalties, 6]
                own = single[frames - 1:]
                ratios = [(_norm_ratio(fitted[:, p], own, slice(0, 3)), _norm_ratio(fitted[:, p], own, slice(3, 6)))
                          for p in range(len(PENALTIES))]
                print(f"  linear fusion fitted on the other half of this patient / single frame (same {len(own)} "
                      "pairs), best penalty: translation error "
                      f"{min(r[0] for r in ratios):.2f}x, rotation error {min(r[1] for r in ratios):.2f}x")


if __name__ == "__main__":
    sys.exit(run_script(main))
