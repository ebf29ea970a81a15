"""Baselines: the training mean, and what the move alone says about the pose."""
import numpy as np
import pytest

from cardiac_dreamer.baselines import move_only_predictions, train_mean_predictions
from cardiac_dreamer.data import TransitionRecord


def records(at1: np.ndarray, moves: np.ndarray, patient: str = "p"):
    return [TransitionRecord(patient, patient, i, None, None, "", "", tuple(a), tuple(m), tuple(a + m))
            for i, (a, m) in enumerate(zip(at1, moves))]


def test_the_mean_baseline_predicts_the_training_pairs_mean_at1_everywhere():
    train = records(np.array([[1.0, 2, 3, 4, 5, 6], [3.0, 2, 1, 0, 5, 6]]), np.zeros((2, 6)))
    predicted = train_mean_predictions(train, train[:1] * 3)
    np.testing.assert_allclose(predicted, np.tile([2.0, 2, 2, 2, 5, 6], (3, 1)))


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
