"""`cardiac-train` end to end: the run directory of the production guide, from the demo and from a real export."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from cardiac_dreamer.config import DataConfig
from cardiac_dreamer.cli.evaluate_command import main as evaluate_main
from cardiac_dreamer.cli.train_command import main
from cardiac_dreamer.io.run_dir import LATEST, LOCK_FILE
from cardiac_dreamer.version import __version__
from test_bad_input import snapshot
from test_trainer import TINY_BACKBONE

TINY_FLAGS = ["--d_model", "16", "--num_heads", "2", "--num_layers", "1", "--image_size", "64",
              "--batch_size", "4", "--num_workers", "0", "--no_progress", "--set", f"model.backbone={TINY_BACKBONE}"]
GUIDE_FILES = [
    "experiment_config.json", "dataset_stats.json", "final_model.ckpt", "checkpoints/last.ckpt",
    "checkpoints/best.ckpt", "logs/cardiac_dreamer", "logs/cardiac_dreamer_csv/metrics.csv",
    "plots/dataset_statistics.png", "plots/training_summary.png",
]


def only_run_dir(output_dir):
    runs = [p for p in output_dir.iterdir() if p.name.startswith("run_")]
    assert len(runs) == 1, runs
    return runs[0]


def test_debug_config_on_a_real_export_produces_every_file_of_the_guide(make_real_export, tmp_path, capsys):
    data_dir = make_real_export(tmp_path / "data", patients=("data_0513_01", "data_0513_02", "data_0513_03"),
                                pairs=6, size=224)
    code = main(["--config", "debug", "--data_dir", str(data_dir), "--output_dir", str(tmp_path / "out"),
                 "--max_epochs", "2", *TINY_FLAGS])
    assert code == 0
    run = only_run_dir(tmp_path / "out")
    for name in GUIDE_FILES:
        assert (run / name).exists(), name
    assert list(run.glob("checkpoints/cardiac_dreamer-epoch=*-val_main_task_loss=*.ckpt"))
    assert (run / "test_evaluation" / "metrics.json").is_file()  # 3 patients: one is held out for testing
    stats = json.loads((run / "dataset_stats.json").read_text())
    splits = stats["patient_split"]
    assert sorted(splits) == ["data_0513_01", "data_0513_02", "data_0513_03"]
    assert sorted(splits.values()) == ["test", "train", "val"]
    experiment = json.loads((run / "experiment_config.json").read_text())
    assert experiment["config"]["model"]["d_model"] == 16 and experiment["seed"] == 42
    assert "run directory:" in capsys.readouterr().out
    assert not (run / LOCK_FILE).exists()
    assert (tmp_path / "out" / LATEST).resolve() == run.resolve()
    last_epoch = next(run.glob("checkpoints/cardiac_dreamer-epoch=01-*.ckpt"))  # with 2 epochs both rank in the top 3
    assert os.path.samefile(run / "final_model.ckpt", last_epoch)  # the same weights are not stored twice


def test_manual_splits_with_the_guides_flags(make_real_export, tmp_path):
    data_dir = make_real_export(tmp_path / "data", patients=("data_0513_01", "data_0513_02", "data_0513_03"),
                                pairs=4, size=64)
    code = main(["--data_dir", str(data_dir), "--output_dir", str(tmp_path / "out"), "--max_epochs", "1",
                 "--manual_splits", "--train_patients", "data_0513_01,data_0513_02", "--val_patients",
                 "data_0513_03", *TINY_FLAGS])
    assert code == 0
    stats = json.loads((only_run_dir(tmp_path / "out") / "dataset_stats.json").read_text())
    assert stats["splits"]["train"]["patients"] == ["data_0513_01", "data_0513_02"]
    assert stats["splits"]["test"]["patients"] == []


def test_a_patient_folder_whose_name_holds_a_comma_is_named_in_double_quotes(make_real_export, tmp_path, capsys):
    data_dir = make_real_export(tmp_path / "data", patients=("data_scan,1", "data_0513_02"), pairs=2, size=64)
    flags = ["--data_dir", str(data_dir), "--max_epochs", "1", "--manual_splits", *TINY_FLAGS]
    code = main([*flags, "--output_dir", str(tmp_path / "cut"), "--train_patients", "data_scan,1",
                 "--val_patients", "data_0513_02"])
    assert code != 0 and 'single quotes: \'"data_scan,1"\'' in capsys.readouterr().err
    assert main([*flags, "--output_dir", str(tmp_path / "out"), "--train_patients", '"data_scan,1"',
                 "--val_patients", "data_0513_02"]) == 0
    stats = json.loads((only_run_dir(tmp_path / "out") / "dataset_stats.json").read_text())
    assert stats["splits"]["train"]["patients"] == ["data_scan,1"]


def test_training_on_poses_that_never_change_on_an_axis_says_so(make_real_export, tmp_path, caplog):
    data_dir = make_real_export(tmp_path / "data", patients=("data_0513_01", "data_0513_02"), pairs=2, size=64)
    for path in data_dir.glob("*/transitions_dataset.json"):  # an exporter that leaves yaw at 0
        entries = json.loads(path.read_text())
        for entry in entries:
            entry["at1_6dof"][5] = entry["at2_6dof"][5] = entry["action_change_6dof"][5] = 0.0
        path.write_text(json.dumps(entries))
    assert main(["--data_dir", str(data_dir), "--output_dir", str(tmp_path / "out"), "--max_epochs", "1",
                 *TINY_FLAGS]) == 0
    assert "the training poses never change on yaw (always 0 deg): the model learns nothing there" in caplog.text


def test_resuming_a_finished_run_with_more_epochs_extends_the_same_run(phantom_dir, tmp_path, monkeypatch,
                                                                       caplog):
    # Started with a data directory relative to where it ran, resumed from elsewhere: the run recorded where its data
    # is.
    monkeypatch.chdir(phantom_dir.parent)
    common = ["--data_dir", phantom_dir.name, "--output_dir", str(tmp_path / "out"),
              "--set", "data.max_pairs_per_patient=4", *TINY_FLAGS]
    assert main([*common, "--max_epochs", "1"]) == 0
    run = only_run_dir(tmp_path / "out")
    monkeypatch.chdir(tmp_path)
    assert main(["--resume_from_checkpoint", str(run / "checkpoints" / "last.ckpt"), "--max_epochs", "2",
                 "--no_progress", "--output_dir", "elsewhere"]) == 0
    assert only_run_dir(tmp_path / "out") == run and not (tmp_path / "elsewhere").exists()
    assert "--output_dir elsewhere is not used: a resumed run continues in its own directory" in caplog.text
    record = json.loads((run / "experiment_config.json").read_text())  # how the run began is kept
    assert "--max_epochs" in record["command_line"] and record["command_line"][record["command_line"].index(
        "--max_epochs") + 1] == "1"
    assert [resume["command_line"][1:3] for resume in record["resumes"]] == [["--resume_from_checkpoint",
                                                                              str(run / "checkpoints" / "last.ckpt")]]
    state = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    assert state["epoch"] == 1 and state["config"]["training"]["max_epochs"] == 2
    lines = (run / "logs" / "cardiac_dreamer_csv" / "metrics.csv").read_text().splitlines()
    assert sum(line.startswith("epoch,") for line in lines) == 1


def test_a_run_saved_before_latent_prediction_existed_resumes_with_the_objective_it_was_trained_with(phantom_dir,
                                                                                                      tmp_path):
    assert main(["--data_dir", str(phantom_dir), "--output_dir", str(tmp_path / "out"), "--max_epochs", "1",
                 "--set", "data.max_pairs_per_patient=4", *TINY_FLAGS]) == 0
    run = only_run_dir(tmp_path / "out")
    last = run / "checkpoints" / "last.ckpt"
    state = torch.load(last, weights_only=True)
    del state["config"]["loss"]["latent_prediction"]  # as an earlier version stored it
    torch.save(state, last)
    recorded = json.loads((run / "experiment_config.json").read_text())
    del recorded["config"]["loss"]["latent_prediction"]
    (run / "experiment_config.json").write_text(json.dumps(recorded))
    assert main(["--resume_from_checkpoint", str(last), "--max_epochs", "2", "--no_progress"]) == 0
    assert torch.load(last, weights_only=True)["config"]["loss"]["latent_prediction"] == "features"


@pytest.fixture(scope="module")
def one_epoch_run(phantom_dir, tmp_path_factory):
    output = tmp_path_factory.mktemp("one_epoch")
    assert main(["--data_dir", str(phantom_dir), "--output_dir", str(output), "--max_epochs", "1",
                 "--set", "data.max_pairs_per_patient=4", *TINY_FLAGS]) == 0
    return only_run_dir(output)


@pytest.mark.parametrize("flags, named", [
    (["--scheduler", "cosine"], "training.scheduler plateau"),  # another schedule's state reads as damaged
    (["--num_heads", "4"], "model.num_heads 2"),  # the weights' shapes would not even notice
    (["--lr", "1e-5"], "training.lr 0.0002"),  # the optimizer's restored state would keep the old rate
    (["--set", "training.weight_decay=0.5"], "training.weight_decay 0.01"),
    (["--test_patients", "phantom_01"], "data.manual_splits False"),  # the split comes from the checkpoint
    (["--set", "data.pair_gap_frames=8"], "data.pair_gap_frames 0"),  # the pairs (and move statistics) it trained on
    (["--set", "loss.latent_prediction=features"], "loss.latent_prediction change"),  # what the latent term learnt
    # named as themselves, not as the other pairs or statistics they draw, which the resume compares after
    (["--set", "data.label_fraction=0.5"], "data.label_fraction 1.0"),
    (["--set", "data.max_pairs_per_patient=3"], "data.max_pairs_per_patient 4"),
])
def test_resuming_with_a_setting_the_checkpoint_holds_changed_is_one_line_naming_it(one_epoch_run, capsys, flags,
                                                                                     named):
    last = one_epoch_run / "checkpoints" / "last.ckpt"
    before = snapshot(one_epoch_run)  # size and modification time: reading its checkpoints twice took 10 s
    capsys.readouterr()
    code = main(["--resume_from_checkpoint", str(last), "--max_epochs", "2", *flags, "--no_progress"])
    error = capsys.readouterr().err.strip()
    assert code == 2 and len(error.splitlines()) == 1, error
    assert named in error and "on resume" in error and "damaged" not in error
    assert snapshot(one_epoch_run) == before


@pytest.mark.parametrize("scheduler, refused", [("cosine", True), ("plateau", False)])
def test_a_new_batch_size_on_resume_is_refused_only_where_the_schedule_counts_steps(phantom_dir, tmp_path, capsys,
                                                                                    scheduler, refused):
    assert main(["--data_dir", str(phantom_dir), "--output_dir", str(tmp_path / "out"), "--max_epochs", "1",
                 "--scheduler", scheduler, "--set", "data.max_pairs_per_patient=4", *TINY_FLAGS]) == 0
    last = only_run_dir(tmp_path / "out") / "checkpoints" / "last.ckpt"
    capsys.readouterr()
    code = main(["--resume_from_checkpoint", str(last), "--max_epochs", "2", "--batch_size", "2", "--no_progress"])
    error = capsys.readouterr().err.strip()
    if refused:  # the cosine schedule's place would be counted in steps of another size
        assert code == 2 and "training.batch_size 4" in error and len(error.splitlines()) == 1, error
    else:
        assert code == 0, error


@pytest.mark.parametrize("at_the_default_path", [False, True])
@pytest.mark.parametrize("given", ["flag", "set", "yaml"])
def test_demo_uses_a_data_directory_given_any_way_instead_of_writing_a_phantom(phantom_dir, tmp_path, capsys,
                                                                              monkeypatch, given, at_the_default_path):
    data = phantom_dir
    if at_the_default_path:  # data/processed, the path a config holds when no directory is given
        monkeypatch.chdir(tmp_path)
        shutil.copytree(phantom_dir, tmp_path / DataConfig().data_dir)
        data = Path(DataConfig().data_dir)
    settings = {"flag": ["--data_dir", str(data)], "set": ["--set", f"data.data_dir={data}"]}
    if given == "yaml":
        (tmp_path / "mine.yaml").write_text(f"data:\n  data_dir: {data}\n")
        settings["yaml"] = ["--config", str(tmp_path / "mine.yaml")]
    code = main(["--demo", "--check_data", "--output_dir", str(tmp_path / "out"), *settings[given]])
    assert code == 0
    assert f"data directory: {data.resolve()}" in capsys.readouterr().out
    assert not (tmp_path / "out" / "demo_data").exists()


def test_demo_with_a_preset_writes_the_phantom_although_the_preset_names_a_data_directory(tmp_path, capsys):
    assert main(["--demo", "--check_data", "--config", "production", "--image_size", "32", "--output_dir",
                 str(tmp_path)]) == 0
    assert f"data directory: {(tmp_path / 'demo_data_32px').resolve()}" in capsys.readouterr().out


def test_a_demo_at_another_image_size_gets_its_own_phantom_folder(tmp_path, capsys):
    """Rewriting OUTPUT_DIR/demo_data at another size would change the data under the runs made on it."""
    (tmp_path / "demo_data").mkdir()
    (tmp_path / "demo_data" / "kept.txt").write_text("the 64 px demo's folder")
    assert main(["--demo", "--check_data", "--output_dir", str(tmp_path), "--image_size", "32"]) == 0
    assert f"data directory: {(tmp_path / 'demo_data_32px').resolve()}" in capsys.readouterr().out
    assert [path.name for path in (tmp_path / "demo_data").iterdir()] == ["kept.txt"]


def test_demo_writes_the_phantom_beside_the_runs_and_trains_on_it(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "cardiac_dreamer.train", "--demo", "--output_dir", str(tmp_path),
         "--max_epochs", "1", "--set", "data.max_pairs_per_patient=4", *TINY_FLAGS],
        capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert len(os.listdir(tmp_path / "demo_data")) > 3
    run = only_run_dir(tmp_path)
    for name in GUIDE_FILES:
        assert (run / name).exists(), name
    config = json.loads((run / "experiment_config.json").read_text())["config"]
    # the demo's own settings on top of the debug preset, which the flags above leave alone
    assert (config["training"]["lr"], config["loss"]["lambda_latent"], config["training"]["average_top_k"]) == (
        5e-4, 1.0, True)


def usage_error(capsys, argv):
    """Run ``cardiac-train argv``, expecting a usage error: its one stderr line."""
    with pytest.raises(SystemExit) as stopped:
        main(argv)
    err = capsys.readouterr().err
    assert stopped.value.code == 2 and "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


@pytest.mark.parametrize("argv, first, second", [
    (["--check_data", "--benchmark"], "--check_data", "--benchmark"),
    (["--benchmark", "--cv", "3"], "--benchmark", "--cv"),
    (["--cv", "3", "--resume_cv", "cv_x"], "--cv", "--resume_cv"),
    (["--resume-from-checkpoint", "last.ckpt", "--benchmark"], "--benchmark", "--resume_from_checkpoint"),
    (["--check_data", "--resume_from_checkpoint", "last.ckpt"], "--check_data", "--resume_from_checkpoint"),
    (["--demo", "--resume_from_checkpoint", "last.ckpt"], "--demo", "--resume_from_checkpoint"),
    (["--demo", "--resume_cv", "cv_x"], "--demo", "--resume_cv"),
    (["--data_only"], "--data_only", "--benchmark"),
    (["--data-only", "--check_data"], "--data_only", "--benchmark"),
])
def test_conflicting_modes_are_one_usage_line_naming_both_flags(argv, first, second, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    line = usage_error(capsys, argv)
    assert first in line and second in line
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("flag", ["--resume_from_checkpoint", "--resume_cv"])
def test_an_empty_resume_path_is_refused_not_taken_for_a_new_run(flag, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # "$CKPT" of an unset variable
    line = usage_error(capsys, [flag, ""])
    assert flag in line and "empty" in line
    assert os.listdir(tmp_path) == []


def test_an_empty_output_dir_is_refused_not_taken_for_the_default(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # "$OUT" of an unset variable wrote ./outputs
    line = usage_error(capsys, ["--demo", "--output_dir", ""])
    assert "--output_dir" in line and "empty" in line
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("flag", ["--output_dir", "--resume_from_checkpoint", "--resume_cv"])
def test_a_path_that_is_not_utf8_is_one_usage_line_before_anything_is_written(flag, capsys, tmp_path, monkeypatch):
    """A name of bytes that are not UTF-8 (here 0xff) reaches Python as a surrogate that TensorBoard and JSON refuse
    half-way through a run."""
    monkeypatch.chdir(tmp_path)
    line = usage_error(capsys, ["--demo", flag, os.fsdecode(b"runs\xff")] if flag == "--output_dir"
                       else [flag, os.fsdecode(b"runs\xff/last.ckpt")])
    assert flag in line and "UTF-8" in line
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("flag", ["--output_dir", "--output-dir"])
def test_a_value_that_begins_with_a_dash_is_told_how_to_write_it(flag, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    line = usage_error(capsys, [flag, "-runs"])  # argparse takes -runs for a flag
    assert "expected one argument" in line and "--output_dir=VALUE" in line
    assert os.listdir(tmp_path) == []


def test_an_output_dir_inside_an_earlier_run_is_refused_and_the_run_left_as_it_was(phantom_dir, tmp_path, capsys):
    earlier = tmp_path / "out" / "run_20240101_000000"  # what a finished run holds, as far as this check reads
    (earlier / "checkpoints").mkdir(parents=True)
    (earlier / "experiment_config.json").write_text("{}")
    code = main(["--data_dir", str(phantom_dir), "--output_dir", str(earlier / "checkpoints"), "--max_epochs", "1",
                 *TINY_FLAGS])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and f"inside the earlier run {earlier}" in err[0], err
    assert sorted(path.name for path in earlier.rglob("*")) == ["checkpoints", "experiment_config.json"]


def test_a_bare_cardiac_train_without_data_says_what_to_run_instead(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no data/processed here
    assert main([]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "data/processed: data directory not found" in err[0]
    assert "cardiac-train --demo" in err[0] and "--data_dir DIR" in err[0]
    assert os.listdir(tmp_path) == []


def test_help_groups_the_flags_and_shows_defaults_and_choices(capsys):
    with pytest.raises(SystemExit) as stopped:
        main(["--help"])
    assert stopped.value.code == 0
    text = capsys.readouterr().out
    for group in ("modes (", "configuration (", "\ndata:", "\nmodel:", "\ntraining:", "\noutput:"):
        assert group in text, group
    for choices in ("--precision {32,16,bf16}", "--scheduler {plateau,cosine,onecycle,none}",
                    "--variant {dreamer,direct}", "--token_type {channel,spatial}"):
        assert choices in text, choices
    flat = " ".join(text.split())
    for default in ("default: 150; training.max_epochs", "default: data/processed; data.data_dir",
                    "default: 0.0002; training.lr"):
        assert default in flat, default


def test_version_is_printed_by_both_commands(capsys):
    for command in (main, evaluate_main):
        with pytest.raises(SystemExit) as stopped:
            command(["--version"])
        assert stopped.value.code == 0 and capsys.readouterr().out.strip().endswith(__version__)


def test_every_flag_answers_to_both_spellings(tmp_path, capsys):
    assert main(["--check-data", "--data-dir", str(tmp_path / "missing")]) == 2
    assert str(tmp_path / "missing") in capsys.readouterr().err
