"""Baselines: the training mean, what the move alone says about the pose, and a ridge on pooled pixels."""
import numpy as np
import pytest
from PIL import Image

from cardiac_dreamer.evaluation.baselines import (
    RIDGE_PENALTIES, PixelRidge, fit_ridge, move_only_predictions, train_mean_predictions,
)
from cardiac_dreamer.data import TransitionRecord
from cardiac_dreamer.data.pooling import pooled_pixels


def records(at1: np.ndarray, moves: np.ndarray, patient: str = "p"):
    return [TransitionRecord(patient, patient, i, None, None, "", "", tuple(a), tuple(m), tuple(a + m))
            for i, (a, m) in enumerate(zip(at1, moves))]


def test_the_mean_baseline_predicts_the_training_pairs_mean_at1_everywhere():
    train = records(np.array([[1.0, 2, 3, 4, 5, 6], [3.0, 2, 1, 0, 5, 6]]), np.zeros((2, 6)))
    predicted = train_mean_predictions(train, train[:1] * 3)
    np.testing.assert_allclose(predicted, np.tile([2.0, 2, 2, 2, 5, 6], (3, 1)))


def test_the_mean_baseline_averages_angles_on_the_circle():
    # Yaw labels of 170 to -170 deg lie around 180: their mean is 180 (here -180), not 0, which would be 178 deg off.
    at1 = np.zeros((4, 6))
    at1[:, 0], at1[:, 5] = [1.0, 2, 3, 4], [170.0, 175, -175, -170]
    predicted = train_mean_predictions(records(at1, np.zeros((4, 6))), records(at1[:1], np.zeros((1, 6))))
    np.testing.assert_allclose(predicted, [[2.5, 0, 0, 0, 0, -180.0]], atol=1e-9)


def test_a_move_that_reveals_the_pose_is_learnt_by_the_move_only_baseline():
    rng = np.random.default_rng(0)
    at1 = rng.uniform(-10, 10, (600, 6))
    leaky = -0.5 * at1 + rng.normal(0, 0.1, (600, 6))  # a sonographer moving half-way to the view
    train, val, test = (records(at1[s], leaky[s]) for s in (slice(0, 400), slice(400, 500), slice(500, 600)))
    error = np.abs(move_only_predictions(train, val, test, seed=0) - at1[500:]).mean()
    mean_error = np.abs(train_mean_predictions(train, test) - at1[500:]).mean()
    assert error < 0.2 * mean_error


def test_a_move_independent_of_the_pose_teaches_the_move_only_baseline_nothing():
    rng = np.random.default_rng(1)
    at1, moves = rng.uniform(-10, 10, (600, 6)), rng.normal(0, 2, (600, 6))
    train, val, test = (records(at1[s], moves[s]) for s in (slice(0, 400), slice(400, 500), slice(500, 600)))
    error = np.abs(move_only_predictions(train, val, test, seed=0) - at1[500:]).mean()
    mean_error = np.abs(train_mean_predictions(train, test) - at1[500:]).mean()
    assert error == pytest.approx(mean_error, rel=0.1)


def test_the_move_only_baseline_is_seeded():
    rng = np.random.default_rng(2)
    at1, moves = rng.uniform(-10, 10, (60, 6)), rng.normal(0, 2, (60, 6))
    train, val = records(at1[:40], moves[:40]), records(at1[40:], moves[40:])
    np.testing.assert_array_equal(move_only_predictions(train, val, val, seed=3),
                                  move_only_predictions(train, val, val, seed=3))


def image_records(directory, patient: str, count: int, rng, signal: bool = True):
    """``count`` 64 px PNG frames of ``patient``: noise, plus a left half whose brightness sets x (mm) and a top band
    whose brightness sets yaw (deg), linearly; without ``signal`` the labels are unrelated noise."""
    folder = directory / patient
    folder.mkdir(parents=True)
    made = []
    for index in range(count):
        left, top = rng.uniform(0, 1, 2)
        pixels = rng.uniform(40, 80, (64, 64))
        pixels[:, :32] += 100 * left
        pixels[:16, 32:] += 100 * top
        path = folder / f"{index}.png"
        Image.fromarray(pixels.astype(np.uint8)).save(path)
        at1 = (np.array([20 * left, 0, 0, 0, 0, -30 * top]) if signal else rng.normal(0, 50, 6))
        made.append(TransitionRecord(patient, patient, index, path, path, path.name, path.name, tuple(at1),
                                     (0.0,) * 6, tuple(at1)))
    return made


def test_the_pixel_ridge_recovers_a_pose_written_into_the_pixels(tmp_path):
    rng = np.random.default_rng(0)
    train = image_records(tmp_path, "a", 40, rng) + image_records(tmp_path, "b", 40, rng)
    test = image_records(tmp_path, "c", 30, rng)
    labels = np.array([r.at1 for r in test])
    error = np.abs(PixelRidge(train, image_size=64).predict(test) - labels).mean(axis=0)
    mean_error = np.abs(train_mean_predictions(train, test) - labels).mean(axis=0)
    assert error[0] < 0.1 * mean_error[0] and error[5] < 0.1 * mean_error[5], (error, mean_error)


def test_the_pixel_ridge_penalty_is_chosen_on_the_training_frames_alone(tmp_path):
    """Scoring with another patient beside the first (frames of a different kind, labels of pure noise, whose best
    penalty is the strongest) changes nothing for the first: neither the penalties nor the statistics saw them."""
    rng = np.random.default_rng(1)
    train = image_records(tmp_path, "a", 30, rng) + image_records(tmp_path, "b", 30, rng)
    scored, noise = image_records(tmp_path, "c", 20, rng), image_records(tmp_path, "d", 20, rng, signal=False)
    ridge = PixelRidge(train, image_size=64)
    assert ridge.fit.penalties[0] < RIDGE_PENALTIES[-1]  # the planted signal wants little shrinkage
    alone = ridge.predict(scored)
    beside_noise = ridge.predict(scored + noise)
    np.testing.assert_array_equal(beside_noise[:len(scored)], alone)
    leaked = fit_ridge(*features_and_labels(ridge, train + noise), [r.patient_id for r in train + noise])
    assert not np.array_equal(leaked.penalties, ridge.fit.penalties)  # had they been seen, the choice would move


def features_and_labels(ridge, records):
    return ridge.features([r.image_t1 for r in records]), np.array([r.at1 for r in records])


def test_one_training_patient_is_cross_validated_in_contiguous_blocks():
    rng = np.random.default_rng(2)
    features = rng.normal(0, 1, (50, 8))
    targets = np.repeat(features @ rng.normal(0, 1, (8, 1)), 6, axis=1)
    fit = fit_ridge(features, targets, ["p"] * 50)
    np.testing.assert_allclose(fit.predict(features), targets, atol=0.05)
    assert fit_ridge(features[:1], targets[:1], ["p"]).penalties.tolist() == [RIDGE_PENALTIES[-1]] * 6


def test_the_ridge_reads_angles_either_side_of_180_degrees_as_neighbours():
    rng = np.random.default_rng(4)
    features = rng.normal(0, 1, (200, 3))
    targets = np.zeros((200, 6))
    targets[:, 3] = 180.0 + 5.0 * features[:, 0]  # roll around 180 deg, as a label folded into [-180, 180) holds it
    targets[:, 3] = (targets[:, 3] + 180.0) % 360.0 - 180.0
    fit = fit_ridge(features, targets, ["p"] * 200)
    predicted_error = (fit.predict(features)[:, 3] - targets[:, 3] + 180.0) % 360.0 - 180.0
    assert np.abs(predicted_error).max() < 0.1  # without the unwrapping, a line through +-180 errs by tens of deg


def test_pooled_pixels_average_each_grid_cell():
    image = np.arange(64 * 64, dtype=float).reshape(1, 64, 64)
    features = pooled_pixels(image, grids=(2, 1))
    np.testing.assert_allclose(features[0], [image[0, :32, :32].mean(), image[0, :32, 32:].mean(),
                                             image[0, 32:, :32].mean(), image[0, 32:, 32:].mean(), image.mean()])
