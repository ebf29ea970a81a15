"""Checkpoints are safe to open and safe to write: a file carrying code is refused without running it, a foreign
or newer file is named for what it is, and a failed save (full disk, unwritable directory) leaves the previous
checkpoints intact and the run resumable."""
import errno
import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import torch

from cardiac_dreamer.io import checkpoint as checkpoint_module
from cardiac_dreamer.io.checkpoint import (
    FORMAT_NAME, FORMAT_VERSION, ModelCheckpoint, load_checkpoint, save_checkpoint,
)
from cardiac_dreamer.cli import evaluate_command as evaluate_cli
from cardiac_dreamer.cli import train_command as train_cli
from cardiac_dreamer.errors import CheckpointError, OutputError
from cardiac_dreamer.io.fileio import atomic_open, write_json
from cardiac_dreamer.io.run_dir import RunDirectory
from cardiac_dreamer.names import MONITOR
from cardiac_dreamer.training.top_k import TopKCheckpoints
from cardiac_dreamer.evaluation import load_model
from test_predictor import save_tiny_checkpoint
from test_trainer import fit, tiny_config


def small_checkpoint(**fields) -> ModelCheckpoint:
    return ModelCheckpoint(**{"config": {}, "model_state": {}, "epoch": 0, "global_step": 0, **fields})


class CreatesAFile:
    """Unpickling this object runs ``exec``, which creates ``marker``: what a malicious checkpoint would do."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return exec, (f"open({self.marker!r}, 'w').close()",)


@pytest.fixture
def malicious(tmp_path):
    """``(checkpoint, marker)``: a file shaped like our training state, with code hidden in it."""
    marker = tmp_path / "payload_ran"
    path = tmp_path / "run_evil" / "checkpoints" / "last.ckpt"
    path.parent.mkdir(parents=True)
    torch.save({"format": FORMAT_NAME, "format_version": FORMAT_VERSION, "kind": "training_state",
                "config": {}, "model_state": {"w": torch.zeros(2)}, "extra": CreatesAFile(marker)}, path)
    return path, marker


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err, err
    return lines[0]


def test_the_crafted_checkpoint_really_runs_code_when_unpickled_unsafely(malicious):
    path, marker = malicious
    torch.load(path, weights_only=False)  # what this library never does
    assert marker.exists()


def test_a_checkpoint_carrying_code_is_refused_and_the_code_never_runs(malicious):
    path, marker = malicious
    with pytest.raises(CheckpointError, match=r"refused to load: .*pickled Python objects.*exec.*nothing in it "
                                              r"was run"):
        load_checkpoint(path)
    assert not marker.exists()


def test_cardiac_evaluate_refuses_a_checkpoint_carrying_code(malicious, capsys):
    path, marker = malicious
    assert evaluate_cli.main(["--checkpoint", str(path), "--device", "cpu"]) != 0
    assert one_error_line(capsys).startswith(f"error: {path}: refused to load")
    assert not marker.exists()


def test_cardiac_train_refuses_to_resume_from_a_checkpoint_carrying_code(malicious, capsys):
    path, marker = malicious
    before = sorted(os.listdir(path.parents[1]))
    assert train_cli.main(["--resume_from_checkpoint", str(path), "--no_progress"]) != 0
    assert one_error_line(capsys).startswith(f"error: {path}: refused to load")
    assert not marker.exists()
    assert sorted(os.listdir(path.parents[1])) == before


FOREIGN = {
    "lightning": ({"state_dict": {"w": torch.zeros(1)}, "pytorch-lightning_version": "2.1.0", "epoch": 3},
                  "a PyTorch Lightning checkpoint (Lightning 2.1.0)"),
    "state-dict": ({"w": torch.zeros(1), "b": torch.zeros(1)}, "a bare state dict of 2 tensors"),
    "tensor": (torch.zeros(3, 4), "a single tensor of shape (3, 4)"),
    "list": ([1, 2, 3], "a list"),
    "other-dict": ({"model": 1, "step": 2}, "a dict with keys 'model', 'step'"),
}


@pytest.mark.parametrize("payload, description", FOREIGN.values(), ids=FOREIGN.keys())
def test_a_foreign_checkpoint_is_refused_saying_what_it_holds(tmp_path, payload, description):
    path = tmp_path / "foreign.ckpt"
    torch.save(payload, path)
    with pytest.raises(CheckpointError) as error:
        load_checkpoint(path)
    message = str(error.value)
    assert message.startswith(f"{path}: not a cardiac_dreamer checkpoint (no '{FORMAT_NAME}' format marker)")
    assert f"; it holds {description}" in message


def test_a_checkpoint_of_a_newer_format_is_refused_naming_both_versions(tmp_path):
    path = save_checkpoint(tmp_path / "future.ckpt", small_checkpoint())
    payload = torch.load(path, weights_only=True)
    torch.save({**payload, "format_version": FORMAT_VERSION + 1, "library_version": "9.0"}, path)
    with pytest.raises(CheckpointError, match=f"format version {FORMAT_VERSION + 1} is newer than this library "
                                              f"reads \\({FORMAT_VERSION}\\); it was written by cardiac_dreamer 9.0"):
        load_checkpoint(path)


def test_a_checkpoint_of_an_older_format_is_refused_saying_to_retrain(tmp_path):
    path = save_checkpoint(tmp_path / "old.ckpt", small_checkpoint())
    torch.save({**torch.load(path, weights_only=True), "format_version": 1, "library_version": "0.1.0"}, path)
    with pytest.raises(CheckpointError, match="format version 1 was written by cardiac_dreamer 0.1.0.*retrain"):
        load_checkpoint(path)


@pytest.mark.parametrize("damage", ["truncated", "text", "empty"])
def test_a_damaged_checkpoint_is_an_unreadable_file_not_a_crash(tmp_path, damage):
    path = save_checkpoint(tmp_path / "x.ckpt", small_checkpoint(model_state={"w": torch.zeros(100)}))
    data = path.read_bytes()
    path.write_bytes({"truncated": data[: len(data) // 2], "text": b"hello, not a checkpoint", "empty": b""}[damage])
    with pytest.raises(CheckpointError, match="not a readable PyTorch checkpoint"):
        load_checkpoint(path)


def test_a_checkpoint_damaged_inside_is_refused_naming_the_damaged_part(tmp_path):
    # torch.load does not check the archive's checksums: bytes flipped inside a weight loaded and predicted nonsense
    path = save_checkpoint(tmp_path / "x.ckpt", small_checkpoint(model_state={"w": torch.zeros(100_000)}))
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle:middle + 64] = bytes(255 - byte for byte in data[middle:middle + 64])
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=r"x\.ckpt: damaged: its part \S+ does not match its checksum"):
        load_checkpoint(path)


def test_a_checkpoint_whose_weights_hold_nan_is_refused_before_it_predicts(phantom_dir, tmp_path, capsys):
    (tmp_path / "run_x" / "checkpoints").mkdir(parents=True)
    path = save_tiny_checkpoint(tmp_path / "run_x" / "checkpoints" / "best.ckpt", phantom_dir)
    checkpoint = load_checkpoint(path)
    checkpoint.model_state["backbone.conv1.weight"][0, 0, 0, 0] = float("nan")
    save_checkpoint(path, checkpoint)
    with pytest.raises(CheckpointError, match=r"weights hold NaN or infinite values \(backbone\.conv1\.weight\)"):
        load_model(path)
    assert evaluate_cli.main(["--checkpoint", str(path), "--output_dir", str(tmp_path / "eval")]) != 0
    assert "NaN or infinite" in one_error_line(capsys)
    assert not (tmp_path / "eval").exists()


def test_a_failed_atomic_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    path = write_json(tmp_path / "experiment_config.json", {"seed": 1})
    with pytest.raises(TypeError):
        write_json(path, {"seed": 2, ("not", "a", "string"): 1})  # fails half-way through the dump
    with pytest.raises(OutputError, match="cannot write \\(No space left on device\\)"):
        with atomic_open(path, "w") as stream:
            stream.write('{"seed": 3')
            raise OSError(errno.ENOSPC, "No space left on device")
    assert json.loads(path.read_text()) == {"seed": 1}
    assert os.listdir(tmp_path) == ["experiment_config.json"]


def test_atomic_files_get_the_permissions_a_plain_open_gives(tmp_path):
    old = os.umask(0o027)
    try:
        with open(tmp_path / "plain", "w"):
            pass
        write_json(tmp_path / "atomic.json", {})
    finally:
        os.umask(old)
    mode = lambda name: stat.S_IMODE((tmp_path / name).stat().st_mode)  # noqa: E731
    assert mode("atomic.json") == mode("plain") == 0o640


def test_resuming_removes_the_temporary_files_of_saves_a_kill_interrupted(tmp_path):
    (tmp_path / ".last.ckpt.k2j4x.tmp").write_bytes(b"half a checkpoint")
    (tmp_path / ".best.ckpt.link.tmp").write_bytes(b"")
    (tmp_path / "last.ckpt").write_bytes(b"kept")
    TopKCheckpoints(tmp_path, MONITOR, k=3).load_state_dict({"k": 3, "entries": []})
    assert os.listdir(tmp_path) == ["last.ckpt"]


def test_saving_into_an_unusable_directory_is_a_checkpoint_error(tmp_path):
    (tmp_path / "file").write_text("a file, not a directory")  # works even as root, unlike chmod
    with pytest.raises(CheckpointError, match="last.ckpt: cannot write .*earlier checkpoints are intact"):
        save_checkpoint(tmp_path / "file" / "last.ckpt", small_checkpoint())


def test_a_full_disk_during_an_epoch_save_keeps_the_last_checkpoint_and_the_run_resumable(
        phantom_dir, tmp_path, monkeypatch):
    real_save = torch.save

    def disk_fills_at_epoch_1(payload, stream, *args, **kwargs):
        if payload["epoch"] >= 1:
            stream.write(b"\0" * 4096)
            raise OSError(errno.ENOSPC, "No space left on device")
        real_save(payload, stream, *args, **kwargs)

    # 2 epochs of 2 steps; a frozen backbone keeps last.ckpt small (what is saved does not matter here)
    config = tiny_config(phantom_dir, **{"data.max_pairs_per_patient": 4, "model.freeze_backbone_layers": 5})
    monkeypatch.setattr(checkpoint_module.torch, "save", disk_fills_at_epoch_1)
    with pytest.raises(CheckpointError, match="No space left on device.*earlier checkpoints are intact"):
        fit(config, tmp_path)
    monkeypatch.setattr(checkpoint_module.torch, "save", real_save)
    (run_root,) = tmp_path.glob("run_*")
    last = run_root / "checkpoints" / "last.ckpt"
    assert load_checkpoint(last).epoch == 0
    assert not list(last.parent.glob(".*.tmp"))
    assert [p.name[:25] for p in last.parent.glob("cardiac_dreamer-*.ckpt")] == ["cardiac_dreamer-epoch=00-"]
    _, result, _ = fit(config, None, resume_from=last, run=RunDirectory(run_root))
    assert result.epochs_completed == 2 and load_checkpoint(last).epoch == 1


def test_a_checkpoint_its_reader_may_not_open_is_named_as_such_not_as_damaged(trained_run):
    """A real permission denial: a child process that drops root before loading a file only root may read."""
    folder = Path(tempfile.mkdtemp(dir="/tmp"))
    try:
        folder.chmod(0o755)
        path = Path(shutil.copy(trained_run / "checkpoints" / "best.ckpt", folder / "best.ckpt"))
        path.chmod(0)
        code = ("import os, sys\n"
                "from cardiac_dreamer.io.checkpoint import load_checkpoint\n"
                "from cardiac_dreamer.errors import CheckpointError\n"
                "try:\n    os.setgid(65534); os.setuid(65534)\nexcept PermissionError:\n    sys.exit(3)\n"
                "try:\n    load_checkpoint(sys.argv[1])\nexcept CheckpointError as error:\n    print(error)\n")
        result = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, timeout=120)
        if result.returncode == 3:
            pytest.skip("dropping to another user needs root")
        assert result.stdout.strip() == f"{path}: cannot read the checkpoint (Permission denied)", result.stderr
    finally:
        shutil.rmtree(folder)

