"""Faults for real: a full file system, a resume that cannot work, two processes on one run, Ctrl-C, hostile
checkpoints, outputs aimed at the data. Each ends with a non-zero exit, one line naming the culprit and no
traceback, and leaves the data directory and every earlier file exactly as they were."""
import contextlib
import gc
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision

from cardiac_dreamer.config import Config, apply_overrides
from cardiac_dreamer.io.checkpoint import load_checkpoint, save_checkpoint
from cardiac_dreamer.pipeline import run_training
from cardiac_dreamer.data import TransitionsDataset, read_records
from cardiac_dreamer.errors import DataError, OutputError
from cardiac_dreamer.evaluation import load_model
from cardiac_dreamer.io.fileio import write_json
from cardiac_dreamer.names import LOSS_NAMES, VAL_MAE_NAMES, csv_columns
from cardiac_dreamer.training.loggers import CSVMetricsWriter, read_rows
from test_bad_input import snapshot
from test_trainer import TINY_BACKBONE, tiny_config

TINY = ["--image_size", "64", "--d_model", "16", "--num_heads", "2", "--num_layers", "1", "--batch_size", "4",
        "--num_workers", "0", "--no_progress", "--device", "cpu", "--set", "data.max_pairs_per_patient=4",
        "--set", f"model.backbone={TINY_BACKBONE}"]
SPLIT = ["--train_patients", "phantom_01,phantom_02", "--val_patients", "phantom_03"]


def run_cli(*args, timeout=600, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cardiac_dreamer.train", *map(str, args)], capture_output=True,
                          text=True, timeout=timeout, **kwargs)


def one_error_line(result: subprocess.CompletedProcess, *words: str) -> str:
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    assert len(errors) == 1, result.stderr
    for word in words:
        assert word in errors[0], f"{word!r} not in {errors[0]!r}"
    return errors[0]


# --------------------------------------------------------------------------------------------- full file system
@contextlib.contextmanager
def small_filesystem(path: Path, size: str):
    """A real tmpfs of ``size`` at ``path`` (the test needs root and mount; skipped otherwise)."""
    path.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                             capture_output=True).returncode == 0
    if not mounted:
        pytest.skip("mounting a small tmpfs needs root")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True)


def fill(directory: Path) -> None:
    """Write until the file system is full."""
    with open(directory / "filler", "wb") as stream, contextlib.suppress(OSError):
        while True:
            stream.write(b"\0" * 65536)
            stream.flush()


def test_a_full_disk_refuses_json_and_csv_rows_whole_and_keeps_what_was_there(tmp_path):
    with small_filesystem(tmp_path / "disk", "256k") as disk:
        config = write_json(disk / "experiment_config.json", {"seed": 1})
        csv = CSVMetricsWriter(disk / "metrics.csv", csv_columns(LOSS_NAMES, VAL_MAE_NAMES))
        csv.write({"epoch": 0, "step": 1, "train_total_loss": 0.5})
        before_csv = (disk / "metrics.csv").read_bytes()
        fill(disk)
        with pytest.raises(OutputError, match="experiment_config.json: cannot write \\(No space left on device\\)"):
            write_json(config, {"seed": 2, "padding": "x" * 100_000})
        long_row = {"epoch": 0, "step": 2, **{f"train_{i}": 0.1 for i in range(10)}, "train_total_loss": 1e-300}
        for _ in range(2000):  # the slack of the file's last 4 KiB page takes rows: write until one is refused
            with contextlib.suppress(OutputError):
                csv.write(long_row)
                continue
            break
        else:
            pytest.fail("the full disk accepted every row")
        assert (disk / "metrics.csv").read_bytes().endswith(b"\n")  # no half row
        assert read_rows(disk / "metrics.csv")[0]["train_total_loss"] == 0.5
        assert (disk / "metrics.csv").read_bytes().startswith(before_csv)
        assert load_json(config) == {"seed": 1}
        assert not list(disk.glob(".*.tmp"))


def load_json(path):
    import json

    return json.loads(Path(path).read_text())


def test_a_training_that_fills_the_disk_stops_in_one_line_and_resumes_once_there_is_room(phantom_dir, tmp_path):
    # The direct model: a model checkpoint is ~45 MB (ResNet18 and the head) and last.ckpt ~135 MB with its
    # optimizer moments; 250 MB holds epoch 0 (top-k file, last.ckpt) but not the files of epoch 1 beside them.
    with small_filesystem(tmp_path / "disk", "250m") as disk:
        args = ["--data_dir", phantom_dir, "--output_dir", disk, "--max_epochs", 3, "--variant", "direct", *TINY,
                *SPLIT]
        one_error_line(run_cli(*args), "cannot write (No space left on device)", "earlier checkpoints are intact")
        (run,) = disk.glob("run_*")
        last = run / "checkpoints" / "last.ckpt"
        assert load_checkpoint(last).epoch == 0
        assert not list(run.rglob(".*.tmp"))
        subprocess.run(["mount", "-o", "remount,size=800m", str(disk)], check=True)
        resumed = run_cli("--resume_from_checkpoint", last)
        assert resumed.returncode == 0, resumed.stderr
        assert load_checkpoint(run / "final_model.ckpt").epoch == 2
        rows = read_rows(run / "logs" / "cardiac_dreamer_csv" / "metrics.csv")
        assert sorted({row["epoch"] for row in rows}) == [0, 1, 2]


# ------------------------------------------------------------------------------------ a resume that cannot work
def test_a_resume_with_a_changed_architecture_is_refused_before_the_run_is_touched(trained_run, tmp_path):
    before = snapshot(trained_run)
    result = run_cli("--resume_from_checkpoint", trained_run / "checkpoints" / "last.ckpt", "--d_model", 64,
                     "--max_epochs", 2)
    one_error_line(result, "last.ckpt", "trained with model.d_model 16 and cannot change it to 64 on resume")
    assert snapshot(trained_run) == before


@contextlib.contextmanager
def read_only(folder: Path):
    """``folder`` made read-only by a read-only bind mount over it, which binds root too (chmod does not)."""
    bound = subprocess.run(["mount", "--bind", str(folder), str(folder)], capture_output=True).returncode == 0
    if not bound:
        pytest.skip("a read-only bind mount needs root and mount")
    try:
        subprocess.run(["mount", "-o", "remount,bind,ro", str(folder)], check=True, capture_output=True)
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], capture_output=True)


def test_a_resume_into_a_read_only_log_folder_is_refused_before_the_run_is_touched(trained_run, tmp_path):
    run = Path(shutil.copytree(trained_run, tmp_path / trained_run.name, symlinks=True))
    tensorboard = run / "logs" / "cardiac_dreamer"
    with read_only(tensorboard):
        before = snapshot(run)
        result = run_cli("--resume_from_checkpoint", run / "checkpoints" / "last.ckpt", "--max_epochs", 2)
        one_error_line(result, str(tensorboard), "not a writable folder", "cannot be resumed")
        assert snapshot(run) == before


def test_a_resume_whose_metrics_log_is_not_a_file_is_refused_before_the_run_is_touched(trained_run, tmp_path):
    run = Path(shutil.copytree(trained_run, tmp_path / trained_run.name, symlinks=True))
    csv = run / "logs" / "cardiac_dreamer_csv" / "metrics.csv"
    csv.unlink()
    csv.mkdir()
    before = snapshot(run)
    result = run_cli("--resume_from_checkpoint", run / "checkpoints" / "last.ckpt", "--max_epochs", 2)
    one_error_line(result, str(csv), "not a writable file", "cannot be resumed")
    assert snapshot(run) == before


def crafted_last_checkpoint(trained_run: Path, tmp_path: Path, change) -> Path:
    """A copy of the run whose last.ckpt ``change(payload)`` altered, written with torch.save as an attacker would."""
    run = Path(shutil.copytree(trained_run, tmp_path / trained_run.name))
    last = run / "checkpoints" / "last.ckpt"
    payload = torch.load(last, weights_only=True)
    change(payload)
    torch.save(payload, last)
    return last


def _nan_weight(payload):
    name = next(key for key, tensor in payload["model_state"].items() if tensor.is_floating_point())
    payload["model_state"][name] = torch.full_like(payload["model_state"][name], float("nan"))


CRAFTED = {
    "no rng states": (lambda payload: payload.update(rng={}), "its rng cannot be restored"),
    "an empty optimizer state": (lambda payload: payload.update(optimizer_state={}), "optimizer_state cannot be"),
    "no top-k registry": (lambda payload: payload.update(top_k={}), "its top_k cannot be restored"),
    "NaN weights": (_nan_weight, "holds NaN or infinite values"),
    "a pose statistic of 7 values": (lambda payload: payload["model_state"].update(pose_mean=torch.zeros(7)),
                                     "size mismatch for pose_mean"),
    "another run's model": (lambda payload: payload["config"]["model"].update(variant="direct"),
                            "not a checkpoint of the run it sits in (model.variant 'direct' (the run: 'dreamer')"),
    "another run of the same model": (lambda payload: payload.update(run_id="0" * 32),
                                      f"not a checkpoint of the run it sits in (run id {'0' * 32}, the run's "),
    "an older run's seed, without an id": (lambda payload: (payload.pop("run_id"),
                                                           payload["config"]["training"].update(seed=7)),
                                           "not a checkpoint of the run it sits in (training.seed 7 (the run: 42)"),
}


@pytest.mark.parametrize("change, words", CRAFTED.values(), ids=CRAFTED.keys())
def test_a_crafted_or_foreign_last_checkpoint_is_refused_in_one_line_and_the_run_is_untouched(trained_run, tmp_path,
                                                                                             change, words):
    last = crafted_last_checkpoint(trained_run, tmp_path, change)
    before = snapshot(last.parents[1])
    one_error_line(run_cli("--resume_from_checkpoint", last, "--max_epochs", 2), str(last), words)
    assert snapshot(last.parents[1]) == before


def test_a_last_checkpoint_copied_out_of_its_run_is_refused_and_nothing_is_written_beside_it(trained_run, tmp_path):
    folder = tmp_path / "mine"
    folder.mkdir()
    copied = Path(shutil.copy(trained_run / "checkpoints" / "last.ckpt", folder / "my.ckpt"))
    write_json(folder / "experiment_config.json", {"mine": True})
    before = snapshot(folder)
    one_error_line(run_cli("--resume_from_checkpoint", copied, "--max_epochs", 2), str(copied), "not in a run")
    assert snapshot(folder) == before


@pytest.mark.parametrize("recorded", [[], {}], ids=["a list", "no config entry"])
def test_a_run_whose_experiment_config_holds_no_config_is_refused_on_resume(trained_run, tmp_path, recorded):
    run = Path(shutil.copytree(trained_run, tmp_path / trained_run.name, symlinks=True))
    write_json(run / "experiment_config.json", recorded)
    before = snapshot(run)
    result = run_cli("--resume_from_checkpoint", run / "checkpoints" / "last.ckpt", "--max_epochs", 2)
    one_error_line(result, "experiment_config.json: no run config (a JSON object with a 'config' entry)")
    assert snapshot(run) == before


def test_a_resume_on_data_that_lost_pairs_since_the_run_began_is_refused(trained_run, phantom_dir, tmp_path):
    """The run trained on 4 pairs of phantom_01 (data.max_pairs_per_patient); its export now holds 3."""
    data = Path(shutil.copytree(phantom_dir, tmp_path / "data"))
    transitions = data / "phantom_01" / "transitions_dataset.json"
    transitions.write_text(json.dumps(json.loads(transitions.read_text())[:3]))
    run = Path(shutil.copytree(trained_run, tmp_path / trained_run.name, symlinks=True))
    before = snapshot(run, data)
    result = run_cli("--resume_from_checkpoint", run / "checkpoints" / "last.ckpt", "--data_dir", data,
                     "--max_epochs", 2)
    one_error_line(result, "patient phantom_01 has 3 pairs, and had 4 when the run last started", "other data")
    assert snapshot(run, data) == before


def test_a_resume_on_data_relabelled_with_as_many_pairs_is_refused(trained_run, phantom_dir, tmp_path):
    """phantom_01 re-exported with every pose 3 mm further right: the pair counts match, the labels do not."""
    data = Path(shutil.copytree(phantom_dir, tmp_path / "data"))
    transitions = data / "phantom_01" / "transitions_dataset.json"
    entries = json.loads(transitions.read_text())
    for entry in entries:
        entry["at1_6dof"][0] += 3.0
        entry["at2_6dof"][0] += 3.0
    transitions.write_text(json.dumps(entries))
    run = Path(shutil.copytree(trained_run, tmp_path / trained_run.name, symlinks=True))
    before = snapshot(run, data)
    result = run_cli("--resume_from_checkpoint", run / "checkpoints" / "last.ckpt", "--data_dir", data,
                     "--max_epochs", 2)
    one_error_line(result, "the training pairs' pose mean of x is", "the labels changed", "other targets")
    assert snapshot(run, data) == before


def test_a_missing_pretrained_weights_file_leaves_no_run_directory(phantom_dir, tmp_path):
    result = run_cli("--data_dir", phantom_dir, "--output_dir", tmp_path / "out", "--max_epochs", 1, *TINY,
                     "--set", f"model.pretrained_weights={tmp_path / 'absent.pth'}")
    one_error_line(result, "absent.pth")
    assert not list((tmp_path / "out").glob("run_*"))


def test_a_resumed_run_needs_no_longer_the_imagenet_file_it_started_from(phantom_dir, tmp_path):
    # the weights come from last.ckpt; an offline machine, or the start file moved away, must not stop a resume
    weights = tmp_path / "imagenet.pth"
    torch.save(torchvision.models.resnet18().state_dict(), weights)
    config = tiny_config(phantom_dir, **{"training.max_epochs": 1, "model.pretrained_weights": str(weights)})
    first = run_training(config, output_dir=tmp_path / "out", progress=False, evaluate_test=False)
    weights.unlink()
    last = first.run_dir / "checkpoints" / "last.ckpt"
    longer = apply_overrides(Config.from_dict(load_checkpoint(last).config), {"training.max_epochs": 2})
    resumed = run_training(longer, resume_from=last, progress=False, evaluate_test=False)
    assert resumed.run_dir == first.run_dir and resumed.fit.epochs_completed == 2


# ------------------------------------------------------------------------------------------ outputs and the data
@pytest.mark.parametrize("where", ["the data directory", "a patient folder"])
def test_an_output_directory_inside_the_data_is_refused(phantom_dir, where):
    target = phantom_dir if where == "the data directory" else phantom_dir / "phantom_01" / "runs"
    before = snapshot(phantom_dir)
    result = run_cli("--data_dir", phantom_dir, "--output_dir", target, "--max_epochs", 1, *TINY)
    one_error_line(result, "inside the data directory")
    assert snapshot(phantom_dir) == before


def test_an_output_directory_in_a_linked_patient_folder_named_by_its_real_path_is_refused(phantom_dir, tmp_path):
    """A patient folder that is a link to another disk is data too, however the output path names it."""
    data, elsewhere = tmp_path / "data", tmp_path / "other_disk"
    data.mkdir()
    for patient in ("phantom_01", "phantom_02", "phantom_03"):
        (data / patient).symlink_to(phantom_dir / patient)
    shutil.copytree(phantom_dir / "phantom_04", elsewhere / "patient_4", symlinks=True)
    (data / "phantom_04").symlink_to(elsewhere / "patient_4")
    before = snapshot(elsewhere)
    result = run_cli("--data_dir", data, "--output_dir", elsewhere / "patient_4" / "runs", "--max_epochs", 1, *TINY)
    one_error_line(result, "inside the data directory", "which a link in it points to")
    assert snapshot(elsewhere) == before


def test_an_evaluation_output_inside_the_data_is_refused(trained_run, phantom_dir):
    before = snapshot(phantom_dir)
    result = subprocess.run([sys.executable, "-m", "cardiac_dreamer.cli.evaluate_command", "--checkpoint",
                             trained_run / "checkpoints" / "best.ckpt", "--split", "val", "--device", "cpu",
                             "--output_dir", phantom_dir / "phantom_02" / "eval"], capture_output=True, text=True,
                            timeout=300)
    one_error_line(result, "inside the data directory")
    assert snapshot(phantom_dir) == before


# ------------------------------------------------------------------------------------ concurrency, interruption
def wait_for(condition, timeout=300):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_a_second_process_on_the_same_run_is_refused(trained_run, tmp_path):
    import shutil

    run = Path(shutil.copytree(trained_run, tmp_path / trained_run.name))
    last = run / "checkpoints" / "last.ckpt"
    first = subprocess.Popen([sys.executable, "-m", "cardiac_dreamer.train", "--resume_from_checkpoint", str(last),
                              "--max_epochs", "30"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        metrics = run / "logs" / "cardiac_dreamer_csv" / "metrics.csv"
        rows = len(read_rows(metrics))
        wait_for(lambda: len(read_rows(metrics)) > rows)  # the first resume is training
        second = run_cli("--resume_from_checkpoint", last, "--max_epochs", 30)
        one_error_line(second, str(run), "in use by another process")
    finally:
        first.kill()
        first.wait()


@pytest.fixture(scope="module")
def long_epoch_phantom(tmp_path_factory) -> Path:
    """Four patients of 150 pairs: at batch size 1 an epoch of the tiny model lasts about a minute, so a Ctrl-C sent
    after its first logged step lands inside it (the shared 12-pair phantom's epoch can end first)."""
    from cardiac_dreamer.synthetic import generate_phantom

    directory = tmp_path_factory.mktemp("long_epoch_phantom")
    generate_phantom(directory, num_patients=4, pairs_per_patient=150, image_size=64, seed=0)
    return directory


LONG_EPOCH = [*TINY[:-2], "--batch_size", "1", "--set", "training.log_every_n_steps=1"]


def interruptible_training(*arguments: str) -> subprocess.Popen:
    """``python -m cardiac_dreamer.train ARGUMENTS`` that a Ctrl-C reaches: SIGINT back to its default in the child,
    since a shell that starts the test suite in the background (``pytest &``, nohup) passes SIGINT on ignored."""
    return subprocess.Popen([sys.executable, "-m", "cardiac_dreamer.train", *arguments],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


@pytest.mark.parametrize("stop, exit_code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)], ids=["ctrl-c", "sigterm"])
def test_ctrl_c_or_sigterm_in_the_first_epoch_says_there_is_nothing_to_resume_and_leaves_no_run(
        long_epoch_phantom, tmp_path, stop, exit_code):
    """A job scheduler stops with SIGTERM before its SIGKILL: handled as Ctrl-C is, with the shell's code for it."""
    output = tmp_path / "out"
    process = interruptible_training("--data_dir", str(long_epoch_phantom), "--output_dir", str(output),
                                     "--max_epochs", "1", *LONG_EPOCH, *SPLIT)
    wait_for(lambda: any(output.glob("run_*/logs/cardiac_dreamer_csv/metrics.csv")) and
             len(read_rows(next(output.glob("run_*/logs/cardiac_dreamer_csv/metrics.csv")))) >= 1)
    process.send_signal(stop)
    _, err = process.communicate(timeout=120)
    assert process.returncode == exit_code and "Traceback" not in err, err
    assert "nothing to resume" in err.strip().splitlines()[-1]
    assert not list(output.glob("run_*"))


def test_a_sigterm_that_lands_in_a_finalizer_still_stops_the_command():
    """Python prints an exception raised in a finalizer and carries on; a stop signal must not be lost there."""
    from cardiac_dreamer.cli.common import interrupted_exit_code, sigterm_as_ctrl_c

    class SignalledWhileCollected:
        def __del__(self):
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0.05)  # the handler runs here, inside the finalizer

    gc.collect()  # an earlier test's garbage (a loader's workers) collected in the window below would get the stop
    with pytest.raises(KeyboardInterrupt), sigterm_as_ctrl_c():
        SignalledWhileCollected()  # collected at once: the signal arrives in its __del__
        time.sleep(1.0)  # raised again here, outside the finalizer
    assert interrupted_exit_code() == 143


def test_sigterm_after_training_says_the_run_is_complete_and_the_resume_finishes_its_evaluation(phantom_dir,
                                                                                                 tmp_path):
    output = tmp_path / "out"
    process = interruptible_training("--data_dir", str(phantom_dir), "--output_dir", str(output), "--max_epochs", "1",
                                     *TINY, *SPLIT, "--test_patients", "phantom_04")
    wait_for(lambda: any(output.glob("run_*/final_model.ckpt")) or process.poll() is not None)
    process.send_signal(signal.SIGTERM)  # in the plots or the test evaluation, which follow the last checkpoint
    _, err = process.communicate(timeout=120)
    (run,) = output.glob("run_*")
    assert process.returncode == 143 and "Traceback" not in err, err
    last = run / "checkpoints" / "last.ckpt"
    assert err.strip().splitlines()[-1] == (f"interrupted; training finished in {run}, not the summary plot and test "
                                            f"evaluation that follow it; finish them with: cardiac-train "
                                            f"--resume_from_checkpoint {last}")
    epochs = [row["epoch"] for row in read_rows(run / "logs" / "cardiac_dreamer_csv" / "metrics.csv")
              if row["val_loss"] is not None]
    finished = run_cli("--resume_from_checkpoint", last)
    assert finished.returncode == 0, finished.stderr
    assert (run / "test_evaluation" / "metrics.json").is_file()
    assert [row["epoch"] for row in read_rows(run / "logs" / "cardiac_dreamer_csv" / "metrics.csv")
            if row["val_loss"] is not None] == epochs == [0]  # nothing trained again


def test_ctrl_c_in_a_cross_validation_fold_says_how_to_resume_the_cross_validation(long_epoch_phantom, tmp_path):
    output = tmp_path / "out"
    process = interruptible_training("--data_dir", str(long_epoch_phantom), "--output_dir", str(output),
                                     "--max_epochs", "1", "--cv", "2", *LONG_EPOCH)
    wait_for(lambda: any(output.glob("cv_*/*/fold_1/seed_*/run_*/logs/cardiac_dreamer_csv/metrics.csv")))
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=120)
    (cv_dir,) = output.glob("cv_*")
    assert process.returncode == 130 and "Traceback" not in err, err
    assert err.strip().splitlines()[-1] == f"interrupted; continue with: cardiac-train --resume_cv {cv_dir}"


@pytest.mark.parametrize("stop, exit_code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)], ids=["ctrl-c", "sigterm"])
def test_ctrl_c_or_sigterm_during_a_closed_loop_evaluation_ends_in_one_line(trained_run, tmp_path, stop, exit_code):
    output = tmp_path / "navigation"
    process = subprocess.Popen(
        [sys.executable, "-m", "cardiac_dreamer.cli.evaluate_command", "--checkpoint",
         str(trained_run / "checkpoints" / "best.ckpt"), "--navigate", "--split", "val", "--episodes", "100000",
         "--output_dir", str(output), "--device", "cpu"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    wait_for(lambda: output.exists() or process.poll() is not None)  # created before the first episode
    assert process.poll() is None, process.communicate()[1]
    time.sleep(1.0)
    process.send_signal(stop)
    _, err = process.communicate(timeout=120)
    assert process.returncode == exit_code and "Traceback" not in err, err
    assert err.strip().splitlines()[-1].startswith("interrupted; the results were not written")


# --------------------------------------------------------------------------------------------- hostile checkpoints
def hostile(trained_run: Path, tmp_path: Path, **changes) -> Path:
    checkpoint = load_checkpoint(trained_run / "checkpoints" / "best.ckpt")
    for key, value in changes.items():
        if key in ("model", "data"):
            checkpoint.config[key] = {**checkpoint.config[key], **value}
        else:
            setattr(checkpoint, key, value)
    run = tmp_path / "run_hostile" / "checkpoints"
    run.mkdir(parents=True)
    return save_checkpoint(run / "best.ckpt", checkpoint)


HOSTILE = {
    "huge d_model": ({"model": {"d_model": 10**9, "num_heads": 1}}, "d_model"),
    "a million layers": ({"model": {"num_layers": 10**6}}, "num_layers"),
    "huge images": ({"data": {"image_size": 2**20}}, "image_size"),
    "weights of another shape": ({"model": {"d_model": 32}}, "do not fit the recorded model"),
}


@pytest.mark.parametrize("changes, word", HOSTILE.values(), ids=HOSTILE.keys())
def test_a_hostile_checkpoint_is_refused_before_anything_is_built(trained_run, tmp_path, changes, word):
    path = hostile(trained_run, tmp_path, **changes)
    started = time.monotonic()
    result = subprocess.run([sys.executable, "-m", "cardiac_dreamer.cli.evaluate_command", "--checkpoint", path,
                             "--device", "cpu"], capture_output=True, text=True, timeout=120)
    one_error_line(result, str(path), word)
    assert time.monotonic() - started < 60


def test_a_checkpoint_whose_weights_are_not_a_dict_is_refused(trained_run, tmp_path):
    path = trained_run / "checkpoints" / "best.ckpt"
    payload = torch.load(path, weights_only=True)
    crafted = tmp_path / "crafted.ckpt"
    torch.save({**payload, "model_state": [1, 2, 3]}, crafted)
    result = subprocess.run([sys.executable, "-m", "cardiac_dreamer.cli.evaluate_command", "--checkpoint", crafted],
                            capture_output=True, text=True, timeout=120)
    one_error_line(result, str(crafted), "model_state must be a dict")


# ------------------------------------------------------------------------------------------------ notebook API
def test_the_notebook_api_refuses_nonsense(trained_run, phantom_dir):
    model = load_model(trained_run / "checkpoints" / "best.ckpt", device="cpu")
    image = sorted((phantom_dir / "phantom_01" / "ft1").glob("*.png"))[0]
    with pytest.raises(DataError, match="got NaN or infinity"):
        model.predict(image, moves=[float("nan"), 0, 0, 0, 0, 0])
    with pytest.raises(DataError, match=r"\(mm, degrees\) within \+-1e\+06; got 1e\+20"):
        model.predict(image, moves=[1e20] * 6)  # read as NaN poses before
    with pytest.raises(DataError, match="at least one pixel"):
        model.predict(np.zeros((0, 0), dtype=np.uint8))


# ---------------------------------------------------------------------------------- a loader worker's error
def test_an_image_broken_after_the_checks_fails_in_one_line_even_from_a_loader_worker(phantom_dir, tmp_path):
    import shutil

    data = Path(shutil.copytree(phantom_dir, tmp_path / "data"))
    records = read_records(data, ["phantom_01"])
    dataset = TransitionsDataset(records, image_size=64, cache_budget_mb=0, disk_cache="off")  # decoded in the workers
    records[0].image_t1.write_bytes(b"not a png any more")
    loader = torch.utils.data.DataLoader(dataset, batch_size=2, num_workers=1)
    from cardiac_dreamer.cli.common import one_line

    with pytest.raises(Exception) as error:
        next(iter(loader))
    assert "Original Traceback" in str(error.value)
    message = one_line(str(error.value))
    assert message.startswith(f"{records[0].source}: entry 0:") and "cannot decode image" in message
    assert "\n" not in message and "Traceback" not in message
    assert os.path.exists(records[0].image_t1)
