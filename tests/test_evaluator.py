"""The evaluator: physical-unit metrics of both tasks, the report files, and agreement with the Predictor."""
import csv
import json
import math

import numpy as np
import pytest
import torch
from torch import nn

from cardiac_dreamer.data import AxisStats, NormalizationStats, TransitionsDataset, read_records
from cardiac_dreamer.errors import ConfigError, DataError
from cardiac_dreamer.evaluation import evaluate, evaluate_checkpoint, load_model
from test_predictor import save_tiny_checkpoint  # the checkpoint fixture shared by the evaluation tests

STATS = NormalizationStats(
    pose=AxisStats(mean=[150.0, 0, 0, 0, 0, 0], std=[2.0, 1, 1, 1, 1, 10]),
    move=AxisStats(mean=[1.0, 2, 3, 4, 5, 6], std=[2.0] * 6),
)


class PresetModel(nn.Module):
    """Answers every batch with preset standardized at1 rows and records the standardized moves it was given."""

    def __init__(self, at1: torch.Tensor, stats: NormalizationStats):
        super().__init__()
        self.register_buffer("at1", at1.float())
        self.normalization = stats
        self.dreamer = nn.Identity()  # marks a world model: the direct task gets its own pass
        self.moves = []

    def forward(self, image_t1, action_change, image_t2=None):
        self.moves.append(action_change.clone())
        return {"at1": self.at1[: len(image_t1)]}


@pytest.fixture
def three_pairs(real_export):
    """Pairs 0-2 of one patient: true x = 100, 102, 104 mm and yaw = 40, 39.75, 39.5 degrees."""
    return TransitionsDataset(read_records(real_export, ["data_0513_01"])[:3], STATS, image_size=64)


def test_metrics_are_computed_in_physical_units_from_destandardized_outputs(three_pairs):
    labels = np.array([r.at1 for r in three_pairs.records])
    errors = np.zeros((3, 6))
    errors[:, 0] = [1.0, -2.0, 6.0]  # mm
    errors[:, 5] = [3.0, 3.0, -6.0]  # degrees
    model = PresetModel(torch.from_numpy(STATS.pose.normalize(labels + errors)), STATS)  # x standardized < 0
    main = evaluate(model, three_pairs, "cpu", batch_size=3, progress=False).metrics["main"]
    assert main["mae_x_mm"] == pytest.approx(3.0)  # (1 + 2 + 6) / 3
    assert main["rmse_x_mm"] == pytest.approx(math.sqrt(41 / 3))
    assert main["median_ae_x_mm"] == pytest.approx(2.0)
    assert main["mae_yaw_deg"] == pytest.approx(4.0)
    assert main["mae_y_mm"] == pytest.approx(0.0, abs=1e-4)
    assert main["direction_accuracy_x"] == 1.0  # 101, 100, 110 mm predicted for 100, 102, 104: all positive
    assert main["translation_error_mm"] == pytest.approx(3.0, abs=1e-4)
    assert main["rotation_error_deg"] == pytest.approx(4.0, abs=1e-3)
    # SmoothL1 (beta 1) of the standardized errors x / 2 = (0.5, -1, 3), yaw / 10 = (0.3, 0.3, -0.6):
    # (0.125 + 0.5 + 2.5 + 0.045 + 0.045 + 0.18) / 18 values.
    assert main["main_task_loss"] == pytest.approx(3.395 / 18, abs=1e-6)


def test_direct_guidance_is_fed_a_physical_zero_move(three_pairs):
    model = PresetModel(torch.zeros(3, 6), STATS)
    evaluate(model, three_pairs, "cpu", batch_size=3, progress=False)
    real_moves, zero_moves = model.moves
    expected_real = STATS.move.normalize(np.array([r.action_change for r in three_pairs.records]))
    np.testing.assert_allclose(real_moves.numpy(), expected_real, atol=1e-6)
    np.testing.assert_allclose(zero_moves.numpy(), np.tile([-0.5, -1.0, -1.5, -2.0, -2.5, -3.0], (3, 1)))


@pytest.fixture(scope="module")
def checkpoint(phantom_dir, tmp_path_factory):
    run = tmp_path_factory.mktemp("run_x")
    (run / "checkpoints").mkdir()
    return save_tiny_checkpoint(run / "checkpoints" / "best.ckpt", phantom_dir)


@pytest.fixture(scope="module")
def evaluated_all(checkpoint):
    """``(report, output_dir)`` of every recorded patient, written to the default place."""
    return evaluate_checkpoint(checkpoint, split="all", device="cpu", progress=False)


def test_the_default_output_is_a_new_folder_in_the_checkpoints_run(checkpoint, evaluated_all):
    _, output_dir = evaluated_all
    assert output_dir.parent == checkpoint.parent.parent
    assert output_dir.name.startswith("evaluation_all_")


def test_the_report_files_are_written(evaluated_all):
    _, output_dir = evaluated_all
    for name in ("metrics.json", "predictions.csv", "predicted_vs_true.png", "error_histograms.png",
                 "per_patient_mae.png"):
        assert (output_dir / name).is_file(), name


def test_predictions_csv_has_one_row_per_sample_with_labels_and_predictions_per_axis(evaluated_all):
    report, output_dir = evaluated_all
    with open(output_dir / "predictions.csv", newline="") as stream:
        rows = list(csv.DictReader(stream))
    assert len(rows) == 48
    first = rows[0]
    assert {"patient_id", "entry_index", "image_t1", "image_t2", "label_x_mm", "pred_yaw_deg",
            "direct_roll_deg"} <= set(first)
    assert float(first["label_x_mm"]) == pytest.approx(report.labels[0, 0], abs=1e-4)
    assert float(first["pred_yaw_deg"]) == pytest.approx(report.predictions[0, 5], abs=1e-4)


def test_metrics_json_counts_the_samples_and_patients_evaluated(evaluated_all):
    _, output_dir = evaluated_all
    metrics = json.loads((output_dir / "metrics.json").read_text())
    assert (metrics["samples"], metrics["patients"], metrics["split"]) == (48, 4, "all")
    assert sorted(metrics["per_patient"]) == ["phantom_01", "phantom_02", "phantom_03", "phantom_04"]
    assert {"mae_x_mm", "rmse_roll_deg", "direction_accuracy_yaw", "main_task_loss"} <= set(metrics["direct"])


@pytest.mark.parametrize("task", ["main", "direct"])
def test_per_patient_figures_add_up_to_the_totals(evaluated_all, task):
    metrics = evaluated_all[0].metrics
    parts = metrics["per_patient"]
    assert sum(part["samples"] for part in parts.values()) == metrics["samples"]
    for key in ("mae_x_mm", "mae_yaw_deg", "translation_error_mm", "rotation_error_deg", "main_task_loss"):
        weighted = sum(part[task][key] * part["samples"] for part in parts.values()) / metrics["samples"]
        assert weighted == pytest.approx(metrics[task][key]), key


def test_predict_gives_the_evaluators_numbers_for_the_same_images(phantom_dir, checkpoint, evaluated_all):
    report = evaluated_all[0]
    records = {(r.folder, r.index): r for r in read_records(phantom_dir)}
    chosen = [records[key] for key in list(zip(report.folders, report.indices))[:6]]
    moves = np.array([r.action_change for r in chosen])
    predictor = load_model(checkpoint, device="cpu")
    np.testing.assert_allclose(predictor.predict([r.image_t1 for r in chosen]), report.direct_predictions[:6],
                               atol=1e-4)
    # The imagined pose after the real move, undone through the move (additive), is the main-task at1.
    imagined = predictor.predict([r.image_t1 for r in chosen], moves)
    np.testing.assert_allclose(imagined - moves, report.predictions[:6], atol=1e-4)


def test_a_patient_outside_the_split_is_refused(checkpoint):
    with pytest.raises(DataError, match="phantom_01.*not in the test split"):
        evaluate_checkpoint(checkpoint, split="test", patients=["phantom_01"], device="cpu")


def test_an_unknown_split_is_refused(checkpoint):
    with pytest.raises(ConfigError, match="split"):
        evaluate_checkpoint(checkpoint, split="holdout", device="cpu")


def test_the_summary_table_lists_every_axis_and_both_tasks(evaluated_all):
    table = evaluated_all[0].summary_table()
    for text in ("x (mm)", "yaw (deg)", "main task", "direct", "translation error", "rotation error", "48 samples"):
        assert text in table
