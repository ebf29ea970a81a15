"""Does a session's history help the pixel ridge? The single-frame ridge against the same ridge given the sweep so far.

    python benchmarks/history_ridge.py DATA_DIR [--train phantom_02,...] [--val phantom_01] [--test phantom_06]

Why: the sequential estimator ties the single frame (docs/closed-loop.md). If history helped even the simplest model
that reads the images on held-out patients, the fuser would be what is missing; if it does not, the phantom's sweeps
do not hold the gain. Each variant is a ridge (:func:`~cardiac_dreamer.evaluation.baselines.fit_ridge`, penalties
chosen by leaving out one training patient) on the current frame's pooled pixels plus, for each of the variant's spans
(``VARIANTS``) back in the sweep (fewer frames at its start), the accumulated move since (what a session knows as the
moves it made) and, in the ``changes`` variants, the change of the pooled pixels since. Prints, per variant, the MAE
averaged over x, y and z (mm) and over roll, pitch and yaw (deg) on the validation and the test patients, each over
the single frame's.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import List, Sequence, Tuple

import numpy as np

from cardiac_dreamer.cli.common import run_script
from cardiac_dreamer.data.chains import sweep_segments
from cardiac_dreamer.data.records import read_records
from cardiac_dreamer.evaluation.baselines import fit_ridge, pooled_frames

Sweep = Tuple[str, np.ndarray, np.ndarray]  # patient id, pooled pixels [n, F], poses [n, 6], in frame order
VARIANTS = (("single frame", False, ()), ("moves 4-32", False, (4, 8, 16, 32)),
            ("moves 4-128", False, (4, 8, 16, 32, 64, 128)), ("changes 4-8", True, (4, 8)),
            ("changes 4-32", True, (4, 8, 16, 32)))  # name, with the pixels' change, spans in frames


def sweeps(data_dir: Path, patients: Sequence[str], image_size: int) -> List[Sweep]:
    """Every sweep segment of these patients, its frames read as the pixel ridge reads them."""
    segments = sweep_segments(read_records(data_dir, patients))
    return [(segment[0].patient_id, pooled_frames([frame.image for frame in segment], image_size),
             np.array([frame.pose for frame in segment])) for segment in segments]


def design(data: Sequence[Sweep], with_changes: bool, lags: Sequence[int]) -> Tuple[np.ndarray, np.ndarray]:
    """``(features [N, F'], poses [N, 6])``: each frame's pooled pixels, then per span the move (and change) since."""
    rows, poses = [], []
    for _, pixels, pose in data:
        for now in range(len(pixels)):
            row = [pixels[now]]
            for lag in lags:
                then = max(0, now - lag)
                row += ([pixels[now] - pixels[then]] if with_changes else []) + [pose[now] - pose[then]]
            rows.append(np.concatenate(row))
            poses.append(pose[now])
    return np.array(rows), np.array(poses)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data_dir", type=Path)
    parser.add_argument("--train", default="phantom_02,phantom_03,phantom_04,phantom_05")
    parser.add_argument("--val", default="phantom_01")
    parser.add_argument("--test", default="phantom_06")
    parser.add_argument("--image_size", type=int, default=64, help="as the model reads the frames (the demo's 64)")
    args = parser.parse_args()
    train, *scored = (sweeps(args.data_dir, patients.split(","), args.image_size)
                      for patients in (args.train, args.val, args.test))
    groups = [patient for patient, pixels, _ in train for _ in range(len(pixels))]
    single = {}
    for name, with_changes, lags in VARIANTS:
        fit = fit_ridge(*design(train, with_changes, lags), groups)
        cells = []
        for split, data in zip(("val", "test"), scored):
            features, poses = design(data, with_changes, lags)
            mae = np.abs(fit.predict(features) - poses).mean(axis=0)
            base = single.setdefault(split, mae)
            cells.append(f"{split} {mae[:3].mean():5.2f} mm {mae[3:].mean():5.2f} deg ("
                         f"{mae[:3].mean() / base[:3].mean():.2f}x / {mae[3:].mean() / base[3:].mean():.2f}x)")
        print(f"{name:13s} " + "   ".join(cells), flush=True)


if __name__ == "__main__":
    sys.exit(run_script(main))
