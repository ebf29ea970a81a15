"""The evaluator: physical-unit metrics of the guidance, the composed prediction and the baselines, the report
files, and agreement with the Predictor."""
import csv
import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from cardiac_dreamer.evaluation.baselines import BASELINES, PixelRidge, move_only_predictions
from cardiac_dreamer.config import DataConfig
from cardiac_dreamer.data import AxisStats, NormalizationStats, TransitionsDataset, read_records
from cardiac_dreamer.data.prepare import choose_labelled_patients
from cardiac_dreamer.errors import ConfigError, DataError, OutputError
from cardiac_dreamer.evaluation import evaluate, evaluate_checkpoint, load_model, load_run
from cardiac_dreamer.evaluation.report_files import write_report
from test_predictor import PHANTOM_SPLIT, save_tiny_checkpoint  # the checkpoint fixture shared by the evaluation tests

STATS = NormalizationStats(
    pose=AxisStats(mean=[150.0, 0, 0, 0, 0, 0], std=[2.0, 1, 1, 1, 1, 10]),
    move=AxisStats(mean=[1.0, 2, 3, 4, 5, 6], std=[2.0] * 6),
)


class PresetModel(nn.Module):
    """Answers every batch with preset at1 rows (mm, degrees) as its guidance, the same rows shifted by 1 as its
    composed prediction, and records the moves it was given."""

    def __init__(self, at1: torch.Tensor, stats: NormalizationStats):
        super().__init__()
        self.register_buffer("at1", at1.float())
        self.register_buffer("pose_mean", torch.tensor(stats.pose.mean))
        self.register_buffer("pose_std", torch.tensor(stats.pose.std))
        self.can_imagine = False  # no move-transfer slopes to measure on a preset answer
        self.moves = []

    def forward(self, image_t1, move=None):
        self.moves.append(move.clone())
        return {"at1": self.at1[: len(image_t1)], "at1_composed": self.at1[: len(image_t1)] + 1.0}


@pytest.fixture
def three_pairs(real_export):
    """Pairs 0-2 of one patient: true x = 100, 102, 104 mm and yaw = 40, 39.75, 39.5 degrees."""
    return TransitionsDataset(read_records(real_export, ["data_0513_01"])[:3], image_size=64)


def test_metrics_are_computed_in_physical_units(three_pairs):
    labels = np.array([r.at1 for r in three_pairs.records])
    errors = np.zeros((3, 6))
    errors[:, 0] = [1.0, -2.0, 6.0]  # mm
    errors[:, 5] = [3.0, 3.0, -6.0]  # degrees
    model = PresetModel(torch.from_numpy(labels + errors), STATS)
    main = evaluate(model, three_pairs, "cpu", batch_size=3, progress=False).metrics["guidance"]
    assert main["mae_x_mm"] == pytest.approx(3.0)  # (1 + 2 + 6) / 3
    assert main["rmse_x_mm"] == pytest.approx(math.sqrt(41 / 3))
    assert main["median_ae_x_mm"] == pytest.approx(2.0)
    assert main["mae_yaw_deg"] == pytest.approx(4.0)
    assert main["mae_y_mm"] == pytest.approx(0.0, abs=1e-4)
    assert main["direction_accuracy_x"] == 1.0  # 101, 100, 110 mm predicted for 100, 102, 104: all positive
    assert main["translation_error_mm"] == pytest.approx(3.0, abs=1e-4)
    assert main["rotation_error_deg"] == pytest.approx(4.0, abs=1e-3)
    # SmoothL1 (beta 1) of the errors in training stds x / 2 = (0.5, -1, 3), yaw / 10 = (0.3, 0.3, -0.6):
    # (0.125 + 0.5 + 2.5 + 0.045 + 0.045 + 0.18) / 18 values.
    assert main["main_task_loss"] == pytest.approx(3.395 / 18, abs=1e-6)


def test_predicted_angles_a_turn_off_their_labels_are_written_beside_them(three_pairs, tmp_path):
    # A model whose normalization centres yaw at 400 deg reads 440 for a label of 40: the same angle. The metrics
    # fold it; predictions.csv writes it within 180 deg of the label, so the columns' difference is the error scored.
    labels = np.array([r.at1 for r in three_pairs.records])
    model = PresetModel(torch.from_numpy(labels + [0, 0, 0, 0, 0, 360.0]), STATS)
    report = evaluate(model, three_pairs, "cpu", batch_size=3, progress=False)
    assert report.metrics["guidance"]["mae_yaw_deg"] == pytest.approx(0.0, abs=1e-4)
    write_report(report, tmp_path)
    with open(tmp_path / "predictions.csv", newline="") as stream:
        rows = list(csv.DictReader(stream))
    for row in rows:
        assert float(row["guidance_yaw_deg"]) == pytest.approx(float(row["label_yaw_deg"]), abs=1e-3)
        assert float(row["composed_yaw_deg"]) == pytest.approx(float(row["label_yaw_deg"]) + 1.0, abs=1e-3)


def test_the_composed_prediction_is_fed_the_real_move_and_scored_beside_the_guidance(three_pairs):
    labels = torch.tensor([r.at1 for r in three_pairs.records])
    model = PresetModel(labels, STATS)
    metrics = evaluate(model, three_pairs, "cpu", batch_size=3, progress=False).metrics
    (moves,) = model.moves
    np.testing.assert_allclose(moves.numpy(), [r.action_change for r in three_pairs.records], atol=1e-5)
    assert metrics["guidance"]["mae_x_mm"] == pytest.approx(0.0, abs=1e-4)
    assert metrics["composed"]["mae_x_mm"] == pytest.approx(1.0, abs=1e-4)


def test_the_guidance_is_compared_with_predicting_the_training_mean(three_pairs):
    labels = np.array([r.at1 for r in three_pairs.records])
    errors = np.zeros((3, 6))
    errors[:, 0] = [1.0, -2.0, 6.0]
    metrics = evaluate(PresetModel(torch.from_numpy(labels + errors), STATS), three_pairs, "cpu",
                       progress=False).metrics
    mean_mae_x = np.abs(labels[:, 0] - STATS.pose.mean[0]).mean()  # the mean predictor: 150 mm for every pair
    assert metrics["train_mean"]["mae_x_mm"] == pytest.approx(mean_mae_x)
    assert metrics["guidance_vs_mean"]["mae_x_mm"] == pytest.approx(3.0 / mean_mae_x)
    assert metrics["guidance_vs_mean"]["worst_axis"] == "mae_x_mm"


class PresetDirectModel(PresetModel):
    """The preset answers of a model without a world model: no composed prediction."""

    def forward(self, image_t1, move=None):
        return {"at1": super().forward(image_t1, move)["at1"]}


def test_a_direct_models_report_has_the_same_keys_overall_and_per_patient(three_pairs):
    labels = torch.tensor([r.at1 for r in three_pairs.records])
    metrics = evaluate(PresetDirectModel(labels, STATS), three_pairs, "cpu", progress=False).metrics
    (patient,) = metrics["per_patient"].values()
    assert metrics["composed"] is None and patient["composed"] is None
    expected = {"samples", "guidance", "train_mean", "guidance_vs_mean", "baselines", "guidance_vs_pixel_ridge"}
    assert expected <= set(patient)


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
    assert {"patient_id", "entry_index", "image_t1", "image_t2", "label_x_mm", "guidance_yaw_deg",
            "composed_roll_deg"} <= set(first)
    assert float(first["label_x_mm"]) == pytest.approx(report.labels[0, 0], abs=1e-4)
    assert float(first["guidance_yaw_deg"]) == pytest.approx(report.guidance[0, 5], abs=1e-4)


def test_from_python_an_earlier_report_or_an_empty_folder_name_is_refused(checkpoint, evaluated_all, tmp_path,
                                                                            monkeypatch):
    _, earlier = evaluated_all
    before = {path.name: path.read_bytes() for path in earlier.iterdir()}
    with pytest.raises(OutputError, match="holds an earlier report"):
        evaluate_checkpoint(checkpoint, split="val", output_dir=earlier, device="cpu", progress=False)
    assert {path.name: path.read_bytes() for path in earlier.iterdir()} == before
    monkeypatch.chdir(tmp_path)
    with pytest.raises(OutputError, match="empty"):  # "" would be the current folder
        evaluate_checkpoint(checkpoint, output_dir="", device="cpu", progress=False)
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize("patients, problem", [([], "names no patient"), ("", "names no patient"),
                                               (3, "must be a list of patient names"),
                                               ([None], "must be a list of patient names")])
def test_a_patient_selection_that_names_nobody_is_refused(checkpoint, patients, problem):
    with pytest.raises(ConfigError, match=problem):  # [] evaluated the whole split; 3 and [None] gave TypeErrors
        evaluate_checkpoint(checkpoint, patients=patients, device="cpu", progress=False)


def test_a_report_prints_as_one_line_not_its_arrays(evaluated_all):
    report, _ = evaluated_all
    assert repr(report) == ("EvaluationReport(48 pairs of 4 patients: phantom_01, phantom_02, phantom_03, phantom_04; "
                            ".metrics holds the figures)")


def test_metrics_json_counts_the_samples_and_patients_evaluated(evaluated_all):
    _, output_dir = evaluated_all
    metrics = json.loads((output_dir / "metrics.json").read_text())
    assert (metrics["samples"], metrics["patients"], metrics["split"]) == (48, 4, "all")
    report, _ = evaluated_all
    assert report.summary_table().splitlines()[0] == "evaluation on all splits: 48 samples, 4 patients"
    assert sorted(metrics["per_patient"]) == ["phantom_01", "phantom_02", "phantom_03", "phantom_04"]
    assert {"mae_x_mm", "rmse_roll_deg", "direction_accuracy_yaw", "main_task_loss"} <= set(metrics["guidance"])
    assert {"mae_x_mm", "main_task_loss"} <= set(metrics["composed"])
    assert {"guidance", "composed", "train_mean", "guidance_vs_mean"} <= set(metrics["definitions"])


@pytest.mark.parametrize("task", ["guidance", "composed", "train_mean"])
def test_per_patient_figures_add_up_to_the_totals(evaluated_all, task):
    metrics = evaluated_all[0].metrics
    parts = metrics["per_patient"]
    assert sum(part["samples"] for part in parts.values()) == metrics["samples"]
    keys = ("mae_x_mm", "mae_yaw_deg", "bias_yaw_deg", "translation_error_mm", "rotation_error_deg")
    for key in keys + (("main_task_loss",) if task != "train_mean" else ()):
        weighted = sum(part[task][key] * part["samples"] for part in parts.values()) / metrics["samples"]
        assert weighted == pytest.approx(metrics[task][key]), key


def test_predict_gives_the_evaluators_numbers_for_the_same_images(phantom_dir, checkpoint, evaluated_all):
    report = evaluated_all[0]
    records = {(r.folder, r.index): r for r in read_records(phantom_dir)}
    chosen = [records[key] for key in list(zip(report.folders, report.indices))[:6]]
    moves = np.array([r.action_change for r in chosen])
    predictor = load_model(checkpoint, device="cpu")
    np.testing.assert_allclose(predictor.predict([r.image_t1 for r in chosen]), report.guidance[:6], atol=1e-4)
    # The imagined pose after the real move, undone through the move (additive), is the composed at1.
    imagined = predictor.predict([r.image_t1 for r in chosen], moves)
    np.testing.assert_allclose(imagined - moves, report.composed[:6], atol=1e-4)


def test_a_patient_outside_the_split_is_refused(checkpoint):
    with pytest.raises(DataError, match="phantom_01.*not in the test split"):
        evaluate_checkpoint(checkpoint, split="test", patients=["phantom_01"], device="cpu")


def test_patients_may_be_one_comma_separated_string_as_on_the_command_line(checkpoint):
    with pytest.raises(DataError, match=r"patient\(s\) 'phantom_01', 'phantom_02' not in the test split"):
        evaluate_checkpoint(checkpoint, split="test", patients="phantom_01, phantom_02", device="cpu")


@pytest.mark.parametrize("batch_size", ["8", 0, 2.5, True])
def test_a_batch_size_that_is_not_a_positive_integer_is_refused(checkpoint, batch_size):
    with pytest.raises(ConfigError, match="batch_size must be a whole number >= 1"):
        evaluate_checkpoint(checkpoint, batch_size=batch_size, device="cpu")


def test_evaluating_training_patients_says_they_were_trained_on(checkpoint, tmp_path, caplog):
    with caplog.at_level("WARNING"):
        evaluate_checkpoint(checkpoint, split="train", patients="phantom_01", output_dir=tmp_path / "train",
                            device="cpu", progress=False)
    assert "evaluating patients the model trained on (phantom_01)" in caplog.text


def test_evaluating_on_data_whose_pairs_changed_since_training_says_so(trained_run, phantom_dir, tmp_path, caplog):
    """The run trained with 4 pairs of its validation patient phantom_03 (data.max_pairs_per_patient); a re-export
    holds 3: allowed, but its figures are not the run's."""
    data = Path(shutil.copytree(phantom_dir, tmp_path / "data"))
    transitions = data / "phantom_03" / "transitions_dataset.json"
    transitions.write_text(json.dumps(json.loads(transitions.read_text())[:3]))
    with caplog.at_level("WARNING"):
        report, _ = evaluate_checkpoint(trained_run / "checkpoints" / "best.ckpt", split="val", data_dir=data,
                                        output_dir=tmp_path / "val", device="cpu", progress=False)
    assert len(report.patient_ids) == 3
    assert "pairs per patient changed since the run recorded them" in caplog.text
    assert "phantom_03 3 (was 4); these figures are not comparable with the run's" in caplog.text


def test_evaluating_after_a_training_patient_changed_says_so(trained_run, phantom_dir, tmp_path, caplog):
    """The evaluated (validation) patient is unchanged, but the baselines beside the model are refitted on the
    training patients as they are now: phantom_01 lost a pair since the run."""
    data = Path(shutil.copytree(phantom_dir, tmp_path / "data"))
    transitions = data / "phantom_01" / "transitions_dataset.json"
    transitions.write_text(json.dumps(json.loads(transitions.read_text())[:3]))
    with caplog.at_level("WARNING"):
        evaluate_checkpoint(trained_run / "checkpoints" / "best.ckpt", split="val", data_dir=data,
                            output_dir=tmp_path / "val", device="cpu", progress=False)
    assert "phantom_01 3 (was 4); these figures are not comparable with the run's" in caplog.text


def test_an_unknown_split_is_refused(checkpoint):
    with pytest.raises(ConfigError, match="split"):
        evaluate_checkpoint(checkpoint, split="holdout", device="cpu")


def test_the_summary_table_lists_every_axis_and_both_tasks(evaluated_all):
    table = evaluated_all[0].summary_table()
    for text in ("x (mm)", "yaw (deg)", "guidance (image alone)", "the true move", "vs predicting",
                 "translation error", "rotation error", "48 samples", "averaged over the six axes"):
        assert text in table


def test_metrics_json_scores_the_pixel_ridge_with_the_guidances_mae_keys(evaluated_all):
    _, output_dir = evaluated_all
    metrics = json.loads((output_dir / "metrics.json").read_text())
    ridge = metrics["baselines"]["pixel_ridge"]
    mae_keys = {key for key in metrics["guidance"] if key.startswith("mae_")}
    assert len(mae_keys) == 6 and mae_keys <= set(ridge)
    for key in mae_keys:
        assert metrics["guidance_vs_pixel_ridge"][key] == pytest.approx(metrics["guidance"][key] / ridge[key])
    patient = metrics["per_patient"]["phantom_04"]
    assert set(patient["baselines"]["pixel_ridge"]) >= mae_keys
    for key in mae_keys:
        assert patient["guidance_vs_pixel_ridge"][key] == pytest.approx(
            patient["guidance"][key] / patient["baselines"]["pixel_ridge"][key])
    assert {"baselines.pixel_ridge", "guidance_vs_pixel_ridge"} <= set(metrics["definitions"])


def test_the_pixel_ridge_is_fitted_on_the_checkpoints_training_patients_alone(phantom_dir, evaluated_all):
    report = evaluated_all[0]
    records = {(r.folder, r.index): r for r in read_records(phantom_dir)}
    evaluated = [records[key] for key in zip(report.folders, report.indices)]
    train = [r for r in read_records(phantom_dir) if r.patient_id in PHANTOM_SPLIT.train]
    expected = PixelRidge(train, image_size=64).predict(evaluated)
    np.testing.assert_allclose(report.baselines["pixel_ridge"], expected)


def test_the_move_only_baseline_is_the_one_cv_scores_fitted_on_the_checkpoints_patients(phantom_dir, evaluated_all):
    report, output_dir = evaluated_all
    records = {(r.folder, r.index): r for r in read_records(phantom_dir)}
    evaluated = [records[key] for key in zip(report.folders, report.indices)]
    train, val = (read_records(phantom_dir, patients) for patients in (PHANTOM_SPLIT.train, PHANTOM_SPLIT.val))
    seed = load_run(report.metadata["checkpoint"]).config.training.seed  # the run's seed, as --cv's folds use theirs
    np.testing.assert_allclose(report.baselines["move_only"], move_only_predictions(train, val, evaluated, seed))
    metrics = json.loads((output_dir / "metrics.json").read_text())
    assert metrics["baselines"]["move_only"]["mae_x_mm"] == pytest.approx(
        np.abs(report.baselines["move_only"][:, 0] - report.labels[:, 0]).mean())
    assert "train_mean" not in metrics["baselines"] and "baselines.move_only" in metrics["definitions"]


def test_a_baseline_added_to_the_registry_is_scored_by_the_report(phantom_dir, tmp_path, monkeypatch):
    monkeypatch.setitem(BASELINES, "zero", lambda data: lambda evaluated: np.zeros((len(evaluated), 6)))
    path = save_tiny_checkpoint(tmp_path / "best.ckpt", phantom_dir)
    report, _ = evaluate_checkpoint(path, output_dir=tmp_path / "evaluation", device="cpu", progress=False)
    assert report.metrics["baselines"]["zero"]["mae_x_mm"] == pytest.approx(np.abs(report.labels[:, 0]).mean())


def test_the_training_mean_is_the_training_pairs_mean_at1(phantom_dir, evaluated_all):
    # What is predicted is at1; the model's pose statistics also count at2, half a mean move away.
    report = evaluated_all[0]
    train = [r for r in read_records(phantom_dir) if r.patient_id in PHANTOM_SPLIT.train]
    np.testing.assert_allclose(report.train_mean, np.mean([r.at1 for r in train], axis=0))
    np.testing.assert_allclose(report.metrics["train_mean"]["mae_x_mm"],
                               np.abs(report.labels[:, 0] - np.mean([r.at1[0] for r in train])).mean())


def test_the_summary_table_ends_with_the_guidance_against_both_baselines(evaluated_all):
    lines = evaluated_all[0].summary_table().splitlines()
    assert "vs pixel" in lines[1] and "ridge" in lines[2]
    ridge = evaluated_all[0].metrics["guidance_vs_pixel_ridge"]
    assert any(line.startswith(f"guidance MAE vs the pixel ridge: {ridge['mean']:.2f}x averaged over the six axes, "
                               f"{ridge['worst']:.2f}x on the worst axis ({ridge['worst_axis']})") for line in lines)


def test_in_a_label_scarce_run_the_pixel_ridge_learns_from_the_labelled_patients_only(phantom_dir, tmp_path):
    path = save_tiny_checkpoint(tmp_path / "best.ckpt", phantom_dir)
    payload = torch.load(path, weights_only=True)
    payload["config"]["data"]["label_fraction"] = 0.5  # one of the two training patients keeps its labels
    torch.save(payload, path)
    report, _ = evaluate_checkpoint(path, output_dir=tmp_path / "evaluation", device="cpu", progress=False)
    labelled = choose_labelled_patients(DataConfig(label_fraction=0.5), PHANTOM_SPLIT)
    assert len(labelled) == 1
    train = read_records(phantom_dir, labelled)
    test = read_records(phantom_dir, PHANTOM_SPLIT.test)
    np.testing.assert_allclose(report.baselines["pixel_ridge"], PixelRidge(train, image_size=64).predict(test))


def test_a_huge_ratio_to_a_baseline_prints_in_three_digits_not_three_hundred():
    # near-constant labels give a baseline of almost no error: the table printed the ratio's 300 digits
    from cardiac_dreamer.evaluation.metrics import ratio_text
    assert [ratio_text(value) for value in (1.8733894866373806e299, 0.8234, None, float("nan"))] == [
        "1.87e+299x", "0.82x", "n/a", "n/a"]
