"""What keeps the every-axis probe from passing on a phantom export: the pose distribution, or the images?

    python benchmarks/phantom_probe.py --patients 4 8 [--pairs 200] [--seed 0] [--alike]

For each patient count, the t1 frames of the sweeps ``python -m cardiac_dreamer.synthetic OUT --patients N --pairs P``
would write are rendered at the probe's 64 px (the same frames, speckle and heart beat as the export; no files are
written) and scored twice by the checks of ``--table`` (:func:`~cardiac_dreamer.phantom.checks.probe_r2`,
:func:`~cardiac_dreamer.phantom.checks.patient_gap`):

* ``as exported``: each frame at its sweep pose. Within one sweep the axes drift together, differently in each
  patient, so a probe fitted on some sweeps also learns couplings the held-out sweep lacks.
* ``axes decoupled``: each axis's poses shuffled among the same patient's frames before rendering, so every axis
  keeps its spread per patient but no axis moves with another. What the probe reads then is what the images show.

With ``--alike`` every patient has the average patient's heart, chest wall, aim and look (only the beat, the breath
and the speckle differ; :meth:`~cardiac_dreamer.phantom.people.Traits.alike`): what the checks lose to the sweeps
alone, without the differences between people.

Prints the leave-one-patient-out R2 per axis, the same R2 on seen patients (blocks of 20 pairs held out, as the gap
folds them: an axis low there too is hardly visible at all, one low only on unseen patients differs between
patients), the unseen-patient / unseen-frames error ratio of each, and its ceiling: the largest ratio an unseen
patient could give with every axis still at R2 0.3 (:func:`~cardiac_dreamer.phantom.checks.gap_ceiling`). Below
1.5, no change to how patients differ passes both checks until seen patients' frames show the axes more clearly.
"""
from __future__ import annotations

import argparse
import sys

import numpy as np

from cardiac_dreamer.cli.common import run_script
from cardiac_dreamer.geometry import AXIS_NAMES
from cardiac_dreamer.phantom.checks import (BLOCK_PAIRS, PROBE_SIZE_PX, gap_ceiling, patient_gap, probe_features,
                                            probe_r2)
from cardiac_dreamer.phantom.trajectories import sweeps
from cardiac_dreamer.synthetic import PhantomPatient


def patient_sample(index: int, seed: int, pairs: int, decoupled: bool, alike: bool = False):
    """``(features [P, F], at1 [P, 6])`` of patient ``index``'s exported t1 frames (poses shuffled per axis when
    ``decoupled``; the average patient's anatomy when ``alike``)."""
    patient = PhantomPatient(index, seed=seed, image_size=PROBE_SIZE_PX, alike=alike)
    trajectory = sweeps(patient.trajectory_rng(), pairs)
    frames = trajectory.pairs[:, 0]
    poses = trajectory.poses[frames]  # [P, 6]
    if decoupled:
        shuffle = np.random.default_rng([seed, index, 99])
        poses = np.stack([shuffle.permutation(poses[:, axis]) for axis in range(6)], 1)
    images = np.stack([patient.render(pose, rng=patient.frame_rng(int(frame)), cycle=patient.frame_cycle(int(frame)))
                       for pose, frame in zip(poses, frames)])
    return probe_features(images), poses


def score(patients: int, seed: int, pairs: int, decoupled: bool, alike: bool) -> str:
    samples = (patient_sample(index, seed, pairs, decoupled, alike) for index in range(1, patients + 1))
    features, poses = zip(*samples)
    features, poses = np.concatenate(features), np.concatenate(poses)
    owners = np.repeat(np.arange(patients), pairs)
    blocks = np.tile((np.arange(pairs) // BLOCK_PAIRS) % 5, patients)  # as the export's checks fold them
    unseen, seen = probe_r2(features, poses, owners), probe_r2(features, poses, blocks)
    gap = patient_gap(features, poses, owners, blocks)

    def axes(r2):
        return ", ".join(f"{name} {value:.2f}" for name, value in zip(AXIS_NAMES, r2))

    return f"{axes(unseen)} | seen patients: {axes(seen)} | gap {gap:.2f}, ceiling {gap_ceiling(seen):.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--patients", type=int, nargs="+", default=[4, 8])
    parser.add_argument("--pairs", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--alike", action="store_true", help="patients with the average anatomy and look")
    args = parser.parse_args()
    print(f"leave-one-patient-out probe R2 (>= 0.3) | unseen patient / unseen frames (>= 1.5); {args.pairs} pairs "
          f"per patient, seed {args.seed}{', patients alike' if args.alike else ''}")
    for patients in args.patients:
        for decoupled in (False, True):
            label = "axes decoupled" if decoupled else "as exported"
            scores = score(patients, args.seed, args.pairs, decoupled, args.alike)
            print(f"{patients} patients, {label:>14}: {scores}", flush=True)


if __name__ == "__main__":
    sys.exit(run_script(main))
