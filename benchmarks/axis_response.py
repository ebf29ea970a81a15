"""What a trained model reads when the probe moves along one axis alone, the others at the view.

    python benchmarks/axis_response.py RUN/checkpoints/averaged.ckpt [--mm=-10,-5,0,5,10] [--deg=-30,-20,...,40]

Renders the first test patient that closed-loop navigation uses (the phantom patient as written, or a fresh one) at
poses zero on every axis but one, 8 frames each (fresh speckle, beat and breath), and prints the mean of the
model's reading of that axis beside the true value. A model trained on sweeps that reach the view from one side
reads the other side as the view, and one that learnt an axis through its coupling with another (roll and yaw move
together in a sweep) hardly reads it alone: why closed-loop starts come from sweeps (docs/closed-loop.md).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from cardiac_dreamer.cli.common import run_script
from cardiac_dreamer.evaluation import Predictor, load_run
from cardiac_dreamer.geometry import AXIS_NAMES
from cardiac_dreamer.guidance.navigation.patients import resolve_patients

FRAMES_PER_POSE = 8


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint", type=Path, help="a checkpoint of a run (or its run directory)")
    parser.add_argument("--mm", default="-10,-5,0,5,10", help="true values of x, y and z")
    parser.add_argument("--deg", default="-30,-20,-10,0,10,20,30,40", help="true values of roll, pitch and yaw")
    args = parser.parse_args()
    values_mm, values_deg = ([float(value) for value in text.split(",")] for text in (args.mm, args.deg))
    run = load_run(args.checkpoint)
    predictor = Predictor(run.model, "cpu")
    patients, _ = resolve_patients(run.checkpoint, run.path, run.config.data.image_size)
    patient = patients[0]
    print(f"{patient.name}: true -> read, the mean of {FRAMES_PER_POSE} frames, every other axis at the view")
    for axis, name in enumerate(AXIS_NAMES):
        readings = []
        for value in values_mm if axis < 3 else values_deg:
            pose = np.zeros(6)
            pose[axis] = value
            frames = [patient.phantom.render(pose, rng=np.random.default_rng(frame))
                      for frame in range(FRAMES_PER_POSE)]
            readings.append(f"{value:+g} -> {predictor.predict(frames)[:, axis].mean():+.1f}")
        print(f"  {name:5s} " + "  ".join(readings))


if __name__ == "__main__":
    sys.exit(run_script(main))
