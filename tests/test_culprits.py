"""Faults for real, third round: a torn metrics.csv row, weight files and devices that are not what they claim, the
ImageNet weights offline, and refusals that name the file the user must change first. Each refusal is a non-zero
exit, one line and no traceback, and writes nothing."""
import os
import shutil
from pathlib import Path

import pytest
import torch

from cardiac_dreamer.io.checkpoint import load_checkpoint, save_checkpoint
from cardiac_dreamer.data import read_records
from cardiac_dreamer.runtime.devices import select_device
from cardiac_dreamer.errors import ConfigError, DataError
from cardiac_dreamer.evaluation import load_model
from cardiac_dreamer.training.loggers import read_rows
from test_bad_input import snapshot
from test_reliability import SPLIT, TINY, one_error_line, run_cli


def metrics_csv(run: Path) -> Path:
    return run / "logs" / "cardiac_dreamer_csv" / "metrics.csv"


# ------------------------------------------------------------------------------------------------ a torn log row
def test_a_resume_after_a_torn_metrics_row_drops_the_half_row_keeps_the_whole_ones_and_says_so(trained_run,
                                                                                              tmp_path):
    run = Path(shutil.copytree(trained_run, tmp_path / trained_run.name))
    log = metrics_csv(run)
    whole = log.read_bytes()
    complete_rows = read_rows(log)
    last_row = whole.splitlines(keepends=True)[-1]
    log.write_bytes(whole + last_row[: len(last_row) // 2])  # an append killed half-way: no newline at the end
    result = run_cli("--resume_from_checkpoint", run / "checkpoints" / "last.ckpt", "--max_epochs", 2)
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr
    said = [line for line in result.stderr.splitlines() if "half-written last row" in line]
    assert len(said) == 1 and str(log) in said[0], result.stderr
    rows = read_rows(log)
    assert rows[: len(complete_rows)] == complete_rows  # not one complete row lost
    assert sorted({row["epoch"] for row in rows}) == [0, 1]
    assert log.read_bytes().startswith(whole) and log.read_bytes().endswith(b"\n")


def test_a_metrics_row_that_does_not_fit_the_header_is_skipped_not_fatal(tmp_path):
    log = tmp_path / "metrics.csv"
    log.write_text("epoch,step,val_loss\n0,1,0.5\n0,2,0.40,1,0.3\n1,3,not a number\n1,4,0.25\n")  # two glued rows
    assert read_rows(log) == [{"epoch": 0, "step": 1, "val_loss": 0.5}, {"epoch": 1, "step": 4, "val_loss": 0.25}]


# ------------------------------------------------------------------------------- weights that are not what they say
def test_a_weights_file_of_non_tensors_is_one_line_naming_the_file_and_the_first_bad_key(phantom_dir, tmp_path):
    weights = tmp_path / "imagenet.pth"
    torch.save({"conv1.weight": torch.zeros(64, 3, 7, 7), "bn1.weight": "ones", "bn1.bias": None}, weights)
    result = run_cli("--data_dir", phantom_dir, "--output_dir", tmp_path / "out", "--max_epochs", 1, *TINY,
                     "--set", f"model.pretrained_weights={weights}")
    line = one_error_line(result, "entry 'bn1.weight' is a str, not a tensor")
    assert line.startswith(f"error: {weights}: ")
    assert not list((tmp_path / "out").glob("run_*"))


def test_pretrained_offline_is_one_line_naming_pretrained_weights(phantom_dir, tmp_path):
    # An empty hub cache and a proxy that refuses at once: torch.hub's download fails fast, never reaching out.
    hub = tmp_path / "torch"
    env = {**os.environ, "TORCH_HOME": str(hub), "https_proxy": "http://127.0.0.1:9",
           "HTTPS_PROXY": "http://127.0.0.1:9", "no_proxy": "", "NO_PROXY": ""}
    result = run_cli("--data_dir", phantom_dir, "--output_dir", tmp_path / "out", "--max_epochs", 1, *TINY,
                     "--set", "model.backbone=resnet34", "--set", "model.pretrained=true", env=env, timeout=120)
    line = one_error_line(result, "model.pretrained_weights", "model.pretrained: false",
                          str(hub / "hub" / "checkpoints" / "resnet34-b627a593.pth"))
    assert line.startswith("error: model.pretrained: the ImageNet resnet34 weights are not in the torch hub cache")
    assert not list((tmp_path / "out").glob("run_*"))


# ------------------------------------------------------------------------------------------------ the backbone depth
def test_a_resnet18_run_records_its_depth_and_loads_as_resnet18(trained_run):
    model = load_model(trained_run / "checkpoints" / "best.ckpt", device="cpu").model  # TINY trains a resnet18
    assert model.config.backbone == "resnet18" and len(model.backbone.layer3) == 2


def test_a_checkpoint_from_before_the_backbone_key_loads_as_resnet34(phantom_dir, tmp_path):
    result = run_cli("--data_dir", phantom_dir, "--output_dir", tmp_path, "--max_epochs", 1, *TINY, *SPLIT,
                     "--set", "model.backbone=resnet34")
    assert result.returncode == 0, result.stderr
    (run,) = tmp_path.glob("run_*")
    checkpoint = load_checkpoint(run / "checkpoints" / "best.ckpt")
    del checkpoint.config["model"]["backbone"]
    (tmp_path / "run_old" / "checkpoints").mkdir(parents=True)
    old = save_checkpoint(tmp_path / "run_old" / "checkpoints" / "best.ckpt", checkpoint)
    model = load_model(old, device="cpu").model
    assert model.config.backbone == "resnet34" and len(model.backbone.layer3) == 6


# ---------------------------------------------------------------------------------------- devices that cannot run
IMPOSSIBLE_DEVICES = ["meta", "xpu", f"cuda:{max(torch.cuda.device_count(), 7)}"]
if not torch.backends.mps.is_available():
    IMPOSSIBLE_DEVICES.append("mps")


@pytest.mark.parametrize("device", [None, 3.5, True])
def test_a_device_that_is_no_device_name_is_one_line(device):
    with pytest.raises(ConfigError) as error:  # torch's own message for None lists its signatures over 5 lines
        select_device(device)
    assert str(error.value).startswith("device must be a name such as 'auto'") and "\n" not in str(error.value)


@pytest.mark.parametrize("device", IMPOSSIBLE_DEVICES)
def test_a_device_that_cannot_run_the_model_here_is_refused_listing_what_the_machine_offers(device):
    with pytest.raises(ConfigError) as error:
        select_device(device)
    offered = ", ".join(["auto", "cpu"] + (["cuda"] + [f"cuda:{i}" for i in range(torch.cuda.device_count())]
                                          if torch.cuda.is_available() else []))
    assert str(error.value).startswith(f"device {device!r} cannot run the model on this machine; it offers: "
                                       f"{offered}")


def test_device_meta_on_the_command_line_is_one_line_and_no_run(phantom_dir, tmp_path):
    result = run_cli("--data_dir", phantom_dir, "--output_dir", tmp_path / "out", "--max_epochs", 1,
                     *[arg if arg != "cpu" else "meta" for arg in TINY])
    one_error_line(result, "device 'meta' cannot run the model on this machine; it offers: auto, cpu")
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").glob("run_*"))


# ------------------------------------------------------------------------------------- refusals name the culprit
@pytest.mark.parametrize("link_in, target_in", [("phantom_01", "phantom_02"), ("phantom_03", "phantom_01")])
def test_an_image_symlink_into_another_patient_names_the_link_first(phantom_dir, tmp_path, link_in, target_in):
    data = Path(shutil.copytree(phantom_dir, tmp_path / "data", symlinks=True))
    link = sorted((data / link_in / "ft1").glob("*.png"))[2]
    target = sorted((data / target_in / "ft1").glob("*.png"))[5]
    link.unlink()
    link.symlink_to(Path("..", "..", target_in, "ft1", target.name))
    with pytest.raises(DataError) as error:
        read_records(data)
    message = str(error.value)
    assert message.startswith(f"{link}: ") and f"(patient {link_in!r})" in message, message
    assert f"is a link to {target.resolve()}, an image of patient {target_in!r}" in message


def test_a_patient_folder_symlinked_to_another_names_the_linked_folder_first(phantom_dir, tmp_path):
    data = Path(shutil.copytree(phantom_dir, tmp_path / "data", symlinks=True))
    (data / "phantom_00").symlink_to("phantom_02")  # sorts first, so it is read before the folder it copies
    with pytest.raises(DataError) as error:
        read_records(data)
    assert str(error.value).startswith(str(data / "phantom_00") + "/"), str(error.value)


def test_resuming_a_checkpoint_copied_into_the_data_names_the_checkpoint(trained_run, phantom_dir, tmp_path):
    data = Path(shutil.copytree(phantom_dir, tmp_path / "data"))
    copied = data / "phantom_01" / "last.ckpt"
    shutil.copy(trained_run / "checkpoints" / "last.ckpt", copied)
    before = snapshot(data)
    result = run_cli("--resume_from_checkpoint", copied, "--data_dir", data, "--max_epochs", 2)
    line = one_error_line(result, "inside the data directory")
    assert line.startswith(f"error: {copied}: this checkpoint lies inside the data directory")
    assert snapshot(data) == before
