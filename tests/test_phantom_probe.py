"""Every axis of the pose is visible in the phantom's images in a way that holds across patients, and patients
differ as people do.

The checks are linear probes (cardiac_dreamer.phantom.checks): ridge regression from pooled pixels to the pose.
Visible: trained on all patients but one and scored on the one left out, R2 per axis. A linear probe is a low bar for
a model but a strict one for the phantom: an axis that only changes the image through rare or symmetric events (a
structure popping in at both extremes) scores near zero. Patients that differ: the same ridge errs more on an unseen
patient than on unseen frames of seen patients.
"""
from __future__ import annotations

import runpy
from pathlib import Path

import numpy as np
import pytest

from cardiac_dreamer.geometry import AXIS_NAMES
from cardiac_dreamer.phantom.checks import export_features, gap_ceiling, patient_gap, probe_features, probe_r2
from cardiac_dreamer.phantom.trajectories import SWEEP_FRAMES, sweep_poses
from cardiac_dreamer.synthetic import POSE_LIMITS, PhantomPatient, generate_phantom

PATIENTS, POSES_PER_PATIENT, IMAGE_SIZE = 5, 600, 64
V4_POSES_PER_PATIENT = 300
MIN_R2, V4_MIN_R2, MIN_PATIENT_GAP = 0.5, 0.3, 1.5


def _report(r2: np.ndarray) -> str:
    return ", ".join(f"{name} {value:.2f}" for name, value in zip(AXIS_NAMES, r2))


def test_a_linear_probe_reads_every_axis_of_a_held_out_v3_patient():
    """Leave-one-patient-out R2 of a ridge probe on 600 uniformly random poses per patient, 64 px.

    measured: x 0.69, y 0.73, z 0.92, roll 0.85, pitch 0.91, yaw 0.77 (phantom v2: y 0.14, roll 0.18, yaw 0.21).
    """
    features, poses, patients = [], [], []
    for index in range(1, PATIENTS + 1):
        patient = PhantomPatient(index, seed=0, version="v3")
        rng = np.random.default_rng([index, 600])
        drawn = rng.uniform(-1.0, 1.0, (POSES_PER_PATIENT, 6)) * POSE_LIMITS  # [n, 6] mm, degrees
        images = np.stack([patient.render(pose, IMAGE_SIZE, rng) for pose in drawn])  # [n, S, S]
        features.append(probe_features(images))
        poses.append(drawn)
        patients += [index] * POSES_PER_PATIENT
    r2 = probe_r2(np.concatenate(features), np.concatenate(poses), np.array(patients))
    assert (r2 >= MIN_R2).all(), _report(r2)


@pytest.fixture(scope="module")
def v4_probe_data():
    """5 v4 patients, 300 frames each at poses drawn from their own sweeps (the real export's distribution), each
    frame at a random moment of the heart beat and the breath; 64 px. ``(features, poses, patients)``."""
    features, poses, patients = [], [], []
    for index in range(1, PATIENTS + 1):
        patient = PhantomPatient(index, seed=0, image_size=IMAGE_SIZE)
        rng = np.random.default_rng([index, 7])
        sweep = np.concatenate([sweep_poses(rng, SWEEP_FRAMES) for _ in range(3)])  # [3 * F, 6]
        drawn = sweep[rng.choice(len(sweep), V4_POSES_PER_PATIENT, replace=False)]
        features.append(probe_features(np.stack([patient.render(pose, rng=rng) for pose in drawn])))
        poses.append(drawn)
        patients += [index] * V4_POSES_PER_PATIENT
    return np.concatenate(features), np.concatenate(poses), np.array(patients)


def test_an_unseen_v4_patient_is_harder_than_unseen_frames_of_seen_patients(v4_probe_data):
    """measured: 2.00."""
    features, poses, patients = v4_probe_data
    frame_folds = np.arange(len(poses)) % PATIENTS  # every patient in every fold
    gap = patient_gap(features, poses, patients, frame_folds)
    assert gap >= MIN_PATIENT_GAP, gap


def test_a_linear_probe_reads_roll_and_yaw_of_a_held_out_v4_patient(v4_probe_data):
    """The large rotations of a sweep are read on an unseen patient. measured: roll 0.68, yaw 0.77."""
    r2 = probe_r2(*v4_probe_data)
    assert (r2[[3, 5]] >= V4_MIN_R2).all(), _report(r2)


@pytest.mark.xfail(strict=True, reason="not met yet: on the real export's pose distribution, with patients that "
                   "differ like people, the pooled-pixel probe reads y and pitch on an unseen patient with R2 below "
                   "0.3 (measured with the chest wall following the probe's face: x 0.50, y 0.16, z 0.47, pitch "
                   "-0.19; with the wall fixed in the body: x 0.30, y -0.21, z -0.28, pitch 0.33)")
def test_a_linear_probe_reads_every_axis_of_a_held_out_v4_patient(v4_probe_data):
    r2 = probe_r2(*v4_probe_data)
    assert (r2 >= V4_MIN_R2).all(), _report(r2)


def test_no_unseen_patient_that_passes_the_probe_gives_a_gap_above_the_ceiling():
    """The ceiling the probe benchmark prints bounds the gap of any patients whose every axis reads at R2 0.3: the
    gap is the two probes' errors ``sqrt(1 - R2)`` averaged over the axes, one over the other."""
    rng = np.random.default_rng(3)
    poses = rng.normal(size=(240, 6)) * [4.0, 5.0, 3.0, 18.0, 6.0, 15.0]
    patients, blocks = np.repeat(np.arange(4), 60), np.tile(np.arange(60) // 12, 4)
    offsets = rng.normal(size=(4, 20))[patients]  # each patient shifts every feature: unseen ones read worse
    features = poses / poses.std(0) @ rng.normal(size=(6, 20)) + 2.0 * offsets + rng.normal(size=(240, 20))
    unseen, seen = probe_r2(features, poses, patients), probe_r2(features, poses, blocks)
    gap = patient_gap(features, poses, patients, blocks)
    assert gap > 1.0
    assert np.isclose(gap, np.sqrt(1.0 - unseen).mean() / np.sqrt(1.0 - seen).mean())
    assert np.isclose(gap_ceiling(seen, min_r2=unseen.min()), np.sqrt(1.0 - unseen.min()) / np.sqrt(1.0 - seen).mean())
    assert gap <= gap_ceiling(seen, min_r2=unseen.min())


def test_the_probe_benchmark_scores_the_frames_the_export_writes(tmp_path):
    """benchmarks/phantom_probe.py renders instead of writing; its frames and poses must be the export's, and its
    decoupled sample the same poses per axis in another order."""
    benchmark = runpy.run_path(str(Path(__file__).parents[1] / "benchmarks" / "phantom_probe.py"))
    features, poses, patients, _ = export_features(generate_phantom(tmp_path, 2, 10, IMAGE_SIZE, seed=0))
    for index in (1, 2):
        rendered, drawn = benchmark["patient_sample"](index, 0, 10, False)
        assert np.array_equal(drawn, poses[patients == index - 1])
        assert np.allclose(rendered, features[patients == index - 1])
    _, shuffled = benchmark["patient_sample"](1, 0, 10, True)
    assert np.array_equal(np.sort(shuffled, 0), np.sort(poses[patients == 0], 0))
    assert not np.array_equal(shuffled, poses[patients == 0])
