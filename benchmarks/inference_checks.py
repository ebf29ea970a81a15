"""Two figures the docs quote about a trained run, on its test patients: what bf16 inference changes, and what the
moves alone say about the pose.

    python benchmarks/inference_checks.py RUN/checkpoints/averaged.ckpt [--frames 2,4,8]

* ``bf16 drift``: the largest and the mean |bf16 - fp32| per axis of the image-only poses (mm, degrees) of every
  test t1 image, ``Predictor(precision="bf16")`` against fp32 (on a CPU without native bf16 both run in fp32).
* ``moves only``: for each K, the test patients' numbered frames as chains of K (:mod:`cardiac_dreamer.data.chains`),
  the image-only single frame beside the moves-only ridge fitted on the training patients' chains
  (:func:`~cardiac_dreamer.evaluation.sequence.moves_only_predictions`, what ``cardiac-evaluate`` reports as
  ``guidance_sequence.baselines.moves_only``) and the training mean, as translation / rotation errors.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import sys
import torch

from cardiac_dreamer.cli.common import run_script
from cardiac_dreamer.data import read_records
from cardiac_dreamer.evaluation import Predictor, load_run
from cardiac_dreamer.evaluation.metrics import summarize
from cardiac_dreamer.evaluation.sequence import moves_only_predictions
from cardiac_dreamer.geometry import mean_pose
from cardiac_dreamer.models.sequence_inputs import chain_set


def errors(labels: np.ndarray, predicted: np.ndarray) -> str:
    metrics = summarize(labels, predicted)
    return f"{metrics['translation_error_mm']:.2f} mm / {metrics['rotation_error_deg']:.2f} deg"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint", type=Path, help="a checkpoint of a run (or its run directory)")
    parser.add_argument("--frames", default="2,4,8", help="chain lengths K, comma-separated")
    args = parser.parse_args()
    run = load_run(args.checkpoint)
    records = read_records(run.checkpoint.data_dir, grouping=run.checkpoint.grouping,
                           max_pairs_per_patient=run.config.data.max_pairs_per_patient)  # as the run read them
    train, test = ([record for record in records if record.patient_id in patients]
                   for patients in (set(run.split.train), set(run.split.test)))
    images = sorted({record.image_t1 for record in test})

    fp32 = Predictor(run.model, "cpu").predict(images)
    drift = np.abs(Predictor(run.model, "cpu", precision="bf16").predict(images) - fp32)
    print(f"bf16 drift over {len(images)} test images, per axis (mm, deg): max {np.round(drift.max(0), 3).tolist()}, "
          f"mean {np.round(drift.mean(0), 3).tolist()}")

    training_mean = mean_pose([record.at1 for record in train])
    for frames in (int(value) for value in args.frames.split(",")):
        chains, _ = chain_set(run.model, test, frames, run.config.data.image_size, torch.device("cpu"))
        labels = chains.targets.double().numpy()
        moves_only = moves_only_predictions(train, chains, frames, run.model.config.composition)
        single = chains.estimates[:, 0].double().numpy()
        print(f"K {frames}, {len(chains)} frames: single frame {errors(labels, single)}, moves only "
              f"{errors(labels, moves_only)}, training mean {errors(labels, np.tile(training_mean, (len(labels), 1)))}")


if __name__ == "__main__":
    sys.exit(run_script(main))
