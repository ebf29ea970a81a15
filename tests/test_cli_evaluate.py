"""``cardiac-evaluate`` end to end: the files it writes, and one clean line for every user error."""
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from cardiac_dreamer.cli.evaluate_command import main
from cardiac_dreamer.data import PatientSplit
from test_predictor import save_tiny_checkpoint  # the checkpoint fixture shared by the evaluation tests

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def checkpoint(phantom_dir, tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("run_x")
    (run / "checkpoints").mkdir()
    return save_tiny_checkpoint(run / "checkpoints" / "best.ckpt", phantom_dir)


def assert_one_error_line(capsys, exit_code, *words):
    captured = capsys.readouterr()
    assert exit_code != 0
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), captured.err
    assert "Traceback" not in captured.err
    for word in words:
        assert word in lines[0]


def test_evaluation_writes_metrics_predictions_and_plots(checkpoint, tmp_path, capsys):
    output = tmp_path / "evaluation"
    code = main(["--checkpoint", str(checkpoint), "--split", "train", "--patients", "phantom_02",
                 "--output_dir", str(output), "--batch_size", "8", "--device", "cpu"])
    assert code == 0
    for name in ("metrics.json", "predictions.csv", "predicted_vs_true.png", "error_histograms.png",
                 "per_patient_mae.png"):
        assert (output / name).is_file(), name
    metrics = json.loads((output / "metrics.json").read_text())
    assert (metrics["split"], metrics["samples"], metrics["patients"]) == ("train", 12, 1)
    assert "mae_x_mm" in metrics["guidance"] and "mae_x_mm" in metrics["composed"]
    table = capsys.readouterr().out
    assert "x (mm)" in table and str(output) in table


def test_a_patient_name_in_double_quotes_stays_one_name(checkpoint, tmp_path, capsys):
    code = main(["--checkpoint", str(checkpoint), "--split", "train", "--patients", '"phantom_02", phantom_01',
                 "--output_dir", str(tmp_path / "evaluation"), "--batch_size", "8", "--device", "cpu"])
    assert code == 0 and json.loads((tmp_path / "evaluation" / "metrics.json").read_text())["patients"] == 2
    with pytest.raises(SystemExit) as exit_info:
        main(["--checkpoint", str(checkpoint), "--patients", '"phantom_02, phantom_01', "--device", "cpu"])
    assert exit_info.value.code == 2
    assert "has a double quote that is not closed" in capsys.readouterr().err


def test_a_folder_holding_an_earlier_report_is_refused_and_kept(checkpoint, tmp_path, capsys):
    output = tmp_path / "evaluation"
    assert main(["--checkpoint", str(checkpoint), "--output_dir", str(output), "--device", "cpu"]) == 0
    capsys.readouterr()
    before = {path.name: path.read_bytes() for path in output.iterdir()}
    code = main(["--checkpoint", str(checkpoint), "--split", "train", "--output_dir", str(output), "--device", "cpu"])
    assert_one_error_line(capsys, code, str(output), "holds an earlier report (metrics.json)", "a new folder")
    assert {path.name: path.read_bytes() for path in output.iterdir()} == before
    code = main(["--checkpoint", str(checkpoint), "--navigate", "--episodes", "2", "--output_dir", str(output),
                 "--device", "cpu"])  # a navigation beside it is another report: its own files, none of these
    assert code == 0 and (output / "navigation.json").is_file()
    code = main(["--checkpoint", str(checkpoint), "--navigate", "--episodes", "2", "--output_dir", str(output),
                 "--device", "cpu"])
    assert_one_error_line(capsys, code, "holds an earlier report (navigation.json)")


def test_a_missing_checkpoint_is_one_error_line(tmp_path, capsys):
    assert_one_error_line(capsys, main(["--checkpoint", str(tmp_path / "nothing.ckpt")]), "checkpoint not found")


def test_a_foreign_checkpoint_is_refused(tmp_path, capsys):
    foreign = tmp_path / "other.ckpt"
    torch.save({"state_dict": {"weight": torch.randn(4, 4)}, "epoch": 1}, foreign)
    assert_one_error_line(capsys, main(["--checkpoint", str(foreign)]), "not a cardiac_dreamer checkpoint")


def test_a_data_dir_without_the_recorded_patients_is_refused(checkpoint, real_export, capsys):
    code = main(["--checkpoint", str(checkpoint), "--data_dir", str(real_export), "--device", "cpu"])
    assert_one_error_line(capsys, code, "phantom_04")


def test_the_hyphenated_data_dir_reaches_the_evaluation(checkpoint, real_export, capsys):
    code = main(["--checkpoint", str(checkpoint), "--data-dir", str(real_export), "--device", "cpu"])
    assert_one_error_line(capsys, code, "phantom_04")


@pytest.mark.parametrize("flag", ["--output_dir", "--data_dir", "--checkpoint"])
def test_an_empty_path_is_refused_not_taken_for_the_current_folder_or_the_default(checkpoint, tmp_path, capsys,
                                                                                   monkeypatch, flag):
    monkeypatch.chdir(tmp_path)  # "$OUT" of an unset variable wrote the report here; "$DATA" read the checkpoint's
    argv = {"--checkpoint": str(checkpoint), "--split": "train", "--device": "cpu", flag: ""}
    with pytest.raises(SystemExit) as stopped:
        main([item for pair in argv.items() for item in pair])
    err = capsys.readouterr().err.strip().splitlines()
    assert stopped.value.code == 2 and len(err) == 1 and flag in err[0] and "empty" in err[0], err
    assert list(tmp_path.iterdir()) == []


def test_an_empty_split_is_refused(phantom_dir, tmp_path, capsys):
    no_test = PatientSplit(train=["phantom_01", "phantom_02"], val=["phantom_03"], test=[])
    checkpoint = save_tiny_checkpoint(tmp_path / "no_test.ckpt", phantom_dir, split=no_test)
    code = main(["--checkpoint", str(checkpoint), "--split", "test", "--device", "cpu"])
    assert_one_error_line(capsys, code, "test split", "no patients")


def test_an_evaluation_refused_inside_the_data_makes_nothing_there(phantom_dir, tmp_path, capsys):
    data = tmp_path / "data"
    shutil.copytree(phantom_dir, data)
    inside = save_tiny_checkpoint(data / "model.ckpt", data)  # its run directory is the data directory
    before = sorted(data.iterdir())
    assert_one_error_line(capsys, main(["--checkpoint", str(inside), "--device", "cpu"]), "inside the data directory")
    assert sorted(data.iterdir()) == before


def test_a_failed_evaluation_leaves_no_empty_output_folder(phantom_dir, tmp_path, capsys):
    data = tmp_path / "data"
    shutil.copytree(phantom_dir, data)
    checkpoint = save_tiny_checkpoint(tmp_path / "best.ckpt", data)
    damaged = sorted((data / "phantom_01" / "ft1").glob("*.png"))[0]  # a training image: only the ridge reads it
    damaged.write_bytes(b"not a png")
    output = tmp_path / "evaluation"
    code = main(["--checkpoint", str(checkpoint), "--output_dir", str(output), "--device", "cpu"])
    assert_one_error_line(capsys, code, damaged.name)
    assert not output.exists()


def test_a_grouped_run_is_evaluated_after_its_data_and_grouping_file_moved(phantom_dir, tmp_path, capsys):
    grouping = {"phantom_01": "anna", "phantom_02": "anna", "phantom_03": "ben", "phantom_04": "carl"}
    data = tmp_path / "data"
    shutil.copytree(phantom_dir, data)
    (data / "groups.json").write_text(json.dumps(grouping))
    split = PatientSplit(train=["anna"], val=["ben"], test=["carl"])
    checkpoint = save_tiny_checkpoint(tmp_path / "best.ckpt", data, split, grouping_file=data / "groups.json",
                                      grouping=grouping)
    moved = data.rename(tmp_path / "moved")
    assert_one_error_line(capsys, main(["--checkpoint", str(checkpoint), "--device", "cpu"]),  # where it was
                          f"{data}: the data directory {checkpoint} was trained on is not there", "--data_dir DIR")
    output = tmp_path / "evaluation"
    code = main(["--checkpoint", str(checkpoint), "--data_dir", str(moved), "--output_dir", str(output),
                 "--device", "cpu"])
    assert code == 0, capsys.readouterr().err
    metrics = json.loads((output / "metrics.json").read_text())
    assert metrics["samples"] == 12 and list(metrics["per_patient"]) == ["carl"]
    by_folder = tmp_path / "by_folder"  # a folder name stands for its patient, as training's split lists take it
    code = main(["--checkpoint", str(checkpoint), "--data_dir", str(moved), "--split", "train", "--patients",
                 "phantom_02", "--output_dir", str(by_folder), "--device", "cpu"])
    assert code == 0, capsys.readouterr().err
    assert list(json.loads((by_folder / "metrics.json").read_text())["per_patient"]) == ["anna"]


def test_the_command_line_prints_no_traceback(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "cardiac_dreamer.cli.evaluate_command", "--checkpoint", str(tmp_path / "nothing.ckpt")],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [f"error: {tmp_path / 'nothing.ckpt'}: checkpoint not found"]
