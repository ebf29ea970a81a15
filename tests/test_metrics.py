"""Pose-error metrics in mm and degrees, checked against figures worked out by hand."""
import math

import numpy as np
import pytest

from cardiac_dreamer.evaluation.metrics import (
    pose_errors,
    rotation_errors,
    summarize,
    summarize_by_patient,
    translation_errors,
)


def poses(*rows):
    return np.array(rows, dtype=np.float64)


def test_mae_rmse_and_median_per_axis_in_physical_units():
    labels = poses([10, 0, 0, 0, 0, 0], [20, 0, 0, 0, 0, 0], [30, 0, 0, 0, 0, 0])
    predictions = labels + poses([1, 0, 0, 0, 0, 3], [-2, 0, 0, 0, 0, 3], [6, 0, 0, 0, 0, -6])
    metrics = summarize(labels, predictions)
    assert metrics["samples"] == 3
    assert metrics["mae_x_mm"] == pytest.approx(3.0)  # (1 + 2 + 6) / 3
    assert metrics["rmse_x_mm"] == pytest.approx(math.sqrt(41 / 3))  # (1 + 4 + 36) / 3
    assert metrics["median_ae_x_mm"] == pytest.approx(2.0)
    assert metrics["mae_yaw_deg"] == pytest.approx(4.0)  # (3 + 3 + 6) / 3
    assert metrics["rmse_yaw_deg"] == pytest.approx(math.sqrt(18.0))  # (9 + 9 + 36) / 3
    assert metrics["mae_y_mm"] == 0.0


def test_bias_is_the_mean_signed_error_per_axis_on_the_circle():
    """A patient read 2 mm too far right and 3 degrees short of +-180 on roll has bias 2 mm and -3 degrees."""
    labels = poses([0, 0, 0, 179, 0, 0], [4, 0, 0, -179, 0, 0])
    predictions = poses([1, 0, 0, 176, 0, 0], [7, 0, 0, 178, 0, 0])
    metrics = summarize(labels, predictions)
    assert metrics["bias_x_mm"] == pytest.approx(2.0)  # (1 + 3) / 2, while the MAE is also 2
    assert metrics["bias_roll_deg"] == pytest.approx(-3.0)  # -3 and -3 on the circle, not -3 and 357
    assert summarize(labels, labels)["bias_yaw_deg"] == 0.0


def test_angle_errors_are_measured_on_the_circle():
    labels = poses([0, 0, 0, 179, -90, 0])
    predictions = poses([0, 0, 0, -179, 270, 360])
    assert pose_errors(labels, predictions)[0, 3:] == pytest.approx([2.0, 0.0, 0.0])
    assert summarize(labels, predictions)["mae_roll_deg"] == pytest.approx(2.0)


def test_direction_accuracy_skips_zero_labels_and_counts_zero_predictions_as_wrong():
    labels = poses([5, 1, 0, 0, 0, 0], [-5, 1, 0, 0, 0, 0], [0, 1, 0, 0, 0, 0])
    predictions = poses([1, 0, 0, 0, 0, 0], [2, 3, 0, 0, 0, 0], [3, 4, 0, 0, 0, 0])
    metrics = summarize(labels, predictions)
    assert metrics["direction_samples_x"] == 2  # the zero label has no direction
    assert metrics["direction_accuracy_x"] == pytest.approx(0.5)
    assert metrics["direction_accuracy_y"] == pytest.approx(2 / 3)  # the predicted 0 is wrong
    assert metrics["direction_samples_z"] == 0
    assert metrics["direction_accuracy_z"] is None


def test_direction_of_angles_is_read_after_folding_into_plus_minus_180():
    metrics = summarize(poses([0, 0, 0, 0, 0, -10]), poses([0, 0, 0, 0, 0, 350]))
    assert metrics["direction_accuracy_yaw"] == 1.0


def test_translation_error_is_the_euclidean_distance_in_mm():
    labels = poses([1, 1, 1, 0, 0, 0], [0, 0, 0, 0, 0, 0])
    predictions = poses([4, 5, 1, 30, 0, 0], [0, 0, 0, 0, 0, 0])
    assert translation_errors(labels, predictions) == pytest.approx([5.0, 0.0])
    assert summarize(labels, predictions)["translation_error_mm"] == pytest.approx(2.5)


def test_rotation_error_is_the_angle_of_the_relative_rotation():
    labels = poses([0, 0, 0, 0, 0, 0], [0, 0, 0, 0, 0, 170], [0, 0, 0, 90, 0, 0], [9, 9, 9, 10, 20, 30])
    predictions = poses([5, 0, 0, 0, 0, 10], [0, 0, 0, 0, 0, -170], [0, 0, 0, 0, 90, 0], [0, 0, 0, 10, 20, 30])
    # Rx(90) against Ry(90): trace(Rx(-90) Ry(90)) = 0, arccos(-1/2) = 120 degrees, not 90 + 90.
    assert rotation_errors(labels, predictions) == pytest.approx([10.0, 20.0, 120.0, 0.0], abs=1e-6)
    assert summarize(labels, predictions)["rotation_error_deg"] == pytest.approx(150.0 / 4, abs=1e-6)


def test_rotation_error_stays_accurate_for_tiny_angles():
    assert rotation_errors(poses([0, 0, 0, 0, 0, 0]), poses([0, 0, 0, 1e-5, 0, 0])) == pytest.approx([1e-5], rel=1e-4)


def test_main_task_loss_is_the_mean_of_the_per_sample_losses():
    labels = poses([0] * 6, [0] * 6)
    assert summarize(labels, labels, losses=np.array([0.5, 1.5]))["main_task_loss"] == pytest.approx(1.0)
    assert "main_task_loss" not in summarize(labels, labels)


def test_per_patient_figures_weighted_by_samples_add_up_to_the_totals():
    rng = np.random.default_rng(0)
    labels = rng.normal(0, 10, (9, 6))
    predictions = labels + rng.normal(0, 3, (9, 6))
    losses = rng.uniform(0, 1, 9)
    patients = ["b", "a", "a", "c", "a", "b", "c", "c", "c"]
    total = summarize(labels, predictions, losses)
    parts = summarize_by_patient(labels, predictions, patients, losses)
    assert list(parts) == ["a", "b", "c"]
    weights = {patient: part["samples"] for patient, part in parts.items()}
    assert sum(weights.values()) == total["samples"]
    for key in ("mae_x_mm", "mae_pitch_deg", "bias_y_mm", "translation_error_mm", "rotation_error_deg",
                "main_task_loss"):
        assert sum(parts[p][key] * weights[p] for p in parts) / total["samples"] == pytest.approx(total[key])
    squares = sum(parts[p]["rmse_z_mm"] ** 2 * weights[p] for p in parts) / total["samples"]
    assert math.sqrt(squares) == pytest.approx(total["rmse_z_mm"])
    counted = sum(parts[p]["direction_samples_roll"] for p in parts)
    agreeing = sum(parts[p]["direction_accuracy_roll"] * parts[p]["direction_samples_roll"] for p in parts)
    assert counted == total["direction_samples_roll"]
    assert agreeing / counted == pytest.approx(total["direction_accuracy_roll"])


def test_metric_names_carry_their_units():
    metrics = summarize(poses([1] * 6), poses([2] * 6))
    for key in ("mae_x_mm", "rmse_roll_deg", "median_ae_z_mm", "direction_accuracy_yaw", "translation_error_mm",
                "rotation_error_deg"):
        assert key in metrics


def test_poses_without_six_components_are_refused():
    with pytest.raises(ValueError, match=r"\[N, 6\]"):
        summarize(np.zeros((2, 7)), np.zeros((2, 7)))
