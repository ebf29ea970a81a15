"""Every bad input ``cardiac-train`` can meet, in one matrix: each one ends with a non-zero exit code and one
``error:`` line naming the file and the problem — no traceback — and leaves the data and output directories
exactly as they were (no run directory, nothing rewritten)."""
import json
import math
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from cardiac_dreamer.cli import train_command as train_cli
from cardiac_dreamer.config import Config, apply_overrides
from cardiac_dreamer.data import TRANSITIONS_FILE, build_datasets, prepare_data
from cardiac_dreamer.io.checkpoint import ModelCheckpoint, save_checkpoint
from test_trainer import TINY_BACKBONE

PATIENT = "data_0513_01"  # the real_export fixture holds data_0513_01..03, 4 pairs each, 64 px RGB images
TINY = ["--image_size", "64", "--d_model", "16", "--num_heads", "2", "--num_layers", "1", "--batch_size", "4",
        "--num_workers", "0", "--max_epochs", "1", "--no_progress", "--device", "cpu",
        "--set", f"model.backbone={TINY_BACKBONE}"]
LOG_LINE = re.compile(r"^\d\d:\d\d:\d\d (DEBUG|INFO|WARNING) ")


class Case:
    """The world a bad input lives in: a data directory, an output directory, and the command line."""

    def __init__(self, root: Path, data: Path):
        self.root, self.data, self.output = root, data, root / "outputs"
        self.output.mkdir()
        self.args = ["--data_dir", str(data), "--output_dir", str(self.output), *TINY]

    def json_path(self, folder: str = PATIENT) -> Path:
        return self.data / folder / TRANSITIONS_FILE

    def entries(self, folder: str = PATIENT) -> list:
        return json.loads(self.json_path(folder).read_text())

    def write_entries(self, entries, folder: str = PATIENT) -> Path:
        path = self.json_path(folder)
        path.write_text(entries if isinstance(entries, str) else json.dumps(entries))
        return path

    def set_entry(self, index: int, key: str, value) -> Path:
        entries = self.entries()
        entries[index][key] = value
        return self.write_entries(entries)

    def image(self, index: int = 1, key: str = "ft2_image_path") -> Path:
        return self.data / PATIENT / self.entries()[index][key].replace("\\", "/")

    def config_file(self, text: str) -> Path:
        path = self.root / "config.yaml"
        path.write_text(text)
        self.args += ["--config", str(path)]
        return path


def snapshot(*directories: Path) -> dict:
    """Every path under ``directories`` with its size and modification time."""
    state = {}
    for directory in directories:
        for path in [directory, *directory.rglob("*")] if directory.exists() else []:
            info = path.lstat()
            state[str(path)] = (info.st_size if path.is_file() else None, info.st_mtime_ns)
    return state


# ------------------------------------------------------------------------------------------------ the cases
# Each returns the words its error line must hold (the file named, and the problem).

def data_dir_missing(case):
    case.args[1] = str(case.root / "no_such_dir")
    return [str(case.root / "no_such_dir"), "data directory not found"]


def data_dir_without_patient_folders(case):
    empty = case.root / "empty"
    (empty / "not_a_patient").mkdir(parents=True)
    case.args[1] = str(empty)
    return [str(empty), "no patient folder"]


def transitions_file_missing(case):
    (case.data / "data_0513_09" / "ft1").mkdir(parents=True)  # no JSON: not a patient folder
    case.args += ["--train_patients", f"{PATIENT},data_0513_09", "--val_patients", "data_0513_02"]
    return ["manual split", "'data_0513_09' does not exist"]


def transitions_file_unparsable(case):
    return [str(case.write_entries("[{")), "invalid JSON at line 1"]


def transitions_file_not_a_list(case):
    return [str(case.write_entries('{"ft1_image_path": "x"}')), "expected a JSON list of entries, got dict"]


def transitions_file_empty(case):
    return [str(case.write_entries("[]")), "the list of entries is empty"]


def entry_missing_a_key(case):
    entries = case.entries()
    del entries[2]["at2_6dof"]
    return [f"{case.write_entries(entries)}: entry 2", "missing key(s) at2_6dof"]


def vector_of_wrong_length(case):
    return [f"{case.set_entry(1, 'at1_6dof', [0.0] * 5)}: entry 1", "at1_6dof must be a list of 6 numbers"]


def non_finite_label(case):
    return [f"{case.set_entry(3, 'action_change_6dof', [0, 0, math.nan, 0, 0, 0])}: entry 3",
            "action_change_6dof[2] must be a finite number"]


def absolute_image_path(case):
    return [f"{case.set_entry(0, 'ft1_image_path', str(case.image(0, 'ft1_image_path')))}: entry 0", "is absolute"]


def image_path_with_dot_dot(case):
    path = case.set_entry(1, "ft2_image_path", "..\\data_0513_02\\ft2\\frames_0513_02_0001.png")
    return [f"{path}: entry 1", "escapes the patient folder"]


def symlink_leaving_the_data_dir(case):
    outside = case.root / "outside.png"
    outside.write_bytes(case.image(1).read_bytes())
    (case.data / PATIENT / "ft2" / "link.png").symlink_to(outside)
    return [f"{case.set_entry(1, 'ft2_image_path', 'ft2/link.png')}: entry 1", "outside the data directory"]


def image_missing(case):
    case.image(2).unlink()
    return [f"{case.json_path()}: entry 2", "image not found"]


def image_not_decodable(case):
    case.image(1).write_bytes(b"GIF89a but not really an image")
    return [f"{case.json_path()}: entry 1", str(case.image(1)), "cannot decode image"]


def png_truncated(case):
    path = case.image(1)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    return [str(path), "image file is truncated"]


def image_with_transparency(case):
    pixels = np.full((64, 64, 4), 120, dtype=np.uint8)
    pixels[:8, :, 3] = 0  # a transparent band: what lies under it is not in the file
    Image.fromarray(pixels, "RGBA").save(case.image(1))
    return [str(case.image(1)), "transparent pixels"]


def image_of_floating_point_pixels(case):
    path = case.image(1).with_suffix(".tiff")
    Image.fromarray(np.full((64, 64), 0.5, dtype=np.float32)).save(path)
    case.set_entry(1, "ft2_image_path", f"ft2/{path.name}")
    return [str(path), "floating-point pixels"]


def duplicate_entries(case):
    entries = case.entries()
    entries[3] = dict(entries[1])
    return [f"{case.write_entries(entries)}: entry 3", "duplicate of entry 1"]


def patient_listed_twice(case):
    case.args += ["--train_patients", f"{PATIENT},{PATIENT}", "--val_patients", "data_0513_02"]
    return [f"patient '{PATIENT}' is listed twice in train"]


def patient_in_two_splits(case):
    case.args += ["--train_patients", f"{PATIENT},data_0513_02", "--val_patients", "data_0513_02"]
    return ["patient 'data_0513_02'", "in both train and val"]


def unknown_patient(case):
    case.args += ["--train_patients", f"{PATIENT},data_9999", "--val_patients", "data_0513_02"]
    return ["'data_9999' does not exist in the data directory"]


def grouping_names_unknown_folder(case):
    grouping = case.root / "grouping.json"
    grouping.write_text(json.dumps({PATIENT: "person_1", "data_0601_07": "person_1"}))
    case.args += ["--grouping_file", str(grouping)]
    return [str(grouping), "'data_0601_07' is not a patient folder"]


def config_value_of_wrong_type(case):
    path = case.config_file("training:\n  batch_size: big\n")
    return [str(path), "training.batch_size must be of type int, got 'big'"]


def config_unknown_key(case):
    path = case.config_file("training:\n  batch_sise: 8\n")
    return [str(path), "unknown key training.batch_sise (did you mean 'batch_size'?)"]


def config_not_yaml(case):
    path = case.config_file("training:\n  batch_size: [8\n")
    return [str(path), "invalid YAML"]


def config_file_missing(case):
    case.args += ["--config", str(case.root / "missing.yaml")]
    return [str(case.root / "missing.yaml"), "config file not found"]


def flag_value_of_wrong_type(case):
    case.args += ["--set", "training.max_epochs=many"]
    return ["training.max_epochs must be of type int, got 'many'"]


def output_dir_unwritable(case):
    # chmod cannot stop root, and CI may run as root: a directory below a regular file is unwritable for anyone.
    blocker = case.output / "a_file"
    blocker.write_text("")
    case.args[3] = str(blocker / "outputs")
    return [str(blocker / "outputs"), "output directory is not writable"]


def output_dir_is_a_file(case):
    path = case.output / "a_file"
    path.write_text("")
    case.args[3] = str(path)
    return [str(path), "output directory is a file"]


def resume_from_a_run_directory(case):
    run = case.output / "run_1"
    (run / "checkpoints").mkdir(parents=True)
    case.args += ["--resume_from_checkpoint", str(run)]
    return [str(run), "a directory, not a checkpoint file", "last.ckpt"]


def resume_checkpoint_missing(case):
    path = case.output / "run_1" / "checkpoints" / "last.ckpt"
    case.args += ["--resume_from_checkpoint", str(path)]
    return [str(path), "checkpoint not found"]


def resume_checkpoint_foreign(case):
    path = case.output / "run_1" / "checkpoints" / "last.ckpt"
    path.parent.mkdir(parents=True)
    torch.save({"state_dict": {"w": torch.zeros(2)}, "pytorch-lightning_version": "2.1.0"}, path)
    case.args += ["--resume_from_checkpoint", str(path)]
    return [str(path), "not a cardiac_dreamer checkpoint", "PyTorch Lightning"]


def resume_from_a_model_checkpoint(case):
    path = case.output / "run_1" / "checkpoints" / "best.ckpt"
    path.parent.mkdir(parents=True)
    config = apply_overrides(Config(), {"data.data_dir": str(case.data), "data.image_size": 64})
    prepared = prepare_data(config.data)
    save_checkpoint(path, ModelCheckpoint(config=config.to_dict(), model_state={}, epoch=0, global_step=0,
                                          split=prepared.split.to_dict()))
    for name in ("experiment_config.json", "dataset_stats.json"):
        (path.parents[1] / name).write_text("{}")
    case.args += ["--resume_from_checkpoint", str(path)]
    return [str(path), "cannot be resumed"]


CASES = [
    data_dir_missing, data_dir_without_patient_folders, transitions_file_missing, transitions_file_unparsable,
    transitions_file_not_a_list, transitions_file_empty, entry_missing_a_key, vector_of_wrong_length,
    non_finite_label, absolute_image_path, image_path_with_dot_dot, symlink_leaving_the_data_dir, image_missing,
    image_not_decodable, png_truncated, image_with_transparency, image_of_floating_point_pixels, duplicate_entries,
    patient_listed_twice, patient_in_two_splits, unknown_patient, grouping_names_unknown_folder,
    config_value_of_wrong_type, config_unknown_key, config_not_yaml, config_file_missing, flag_value_of_wrong_type,
    output_dir_unwritable, output_dir_is_a_file, resume_checkpoint_missing, resume_from_a_run_directory,
    resume_checkpoint_foreign, resume_from_a_model_checkpoint,
]


@pytest.fixture
def case(tmp_path, make_real_export) -> Case:
    return Case(tmp_path, make_real_export(tmp_path / "data", pairs=4, size=64))


@pytest.mark.parametrize("make_bad", CASES, ids=[c.__name__ for c in CASES])
def test_bad_input_is_one_error_line_and_changes_nothing(case, make_bad, capsys):
    words = make_bad(case)
    before = snapshot(case.data, case.output)
    code = train_cli.main(case.args)
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert code != 0
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err, err
    for word in words:
        assert word in lines[0], f"{word!r} not in {lines[0]!r}"
    assert snapshot(case.data, case.output) == before


SUBPROCESS_CASES = [png_truncated, config_not_yaml, resume_checkpoint_foreign]


@pytest.mark.parametrize("make_bad", SUBPROCESS_CASES, ids=[c.__name__ for c in SUBPROCESS_CASES])
def test_the_console_command_prints_no_traceback_for_bad_input(case, make_bad):
    words = make_bad(case)
    before = snapshot(case.data, case.output)
    result = subprocess.run([sys.executable, "-m", "cardiac_dreamer.train", *case.args],
                            capture_output=True, text=True, timeout=300)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error: ")]
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    assert len(errors) == 1 and all(w in errors[0] for w in words), result.stderr
    assert all(LOG_LINE.match(line) for line in lines if line not in errors), result.stderr  # the rest is logging
    assert snapshot(case.data, case.output) == before


def _mode_converters():
    """Files in unusual modes that hold the same gray picture: each must load as that picture."""
    def sixteen_bit(rgb):
        return Image.fromarray(np.asarray(rgb.convert("L"), dtype=np.uint16) * 257)

    return {
        "16-bit": sixteen_bit,
        "palette": lambda rgb: rgb.convert("P", palette=Image.Palette.ADAPTIVE),
        "opaque-alpha": lambda rgb: rgb.convert("RGBA"),
        "gray-alpha": lambda rgb: rgb.convert("LA"),
        "cmyk": lambda rgb: rgb.convert("CMYK"),
    }


@pytest.mark.parametrize("convert", _mode_converters().values(), ids=_mode_converters().keys())
def test_images_in_unusual_modes_load_as_their_gray_picture(real_export, convert):
    config = apply_overrides(Config(), {"data.data_dir": str(real_export), "data.image_size": 64})
    reference = build_datasets(prepare_data(config.data), config.data, normalize_images=False)
    for path in sorted((real_export / PATIENT).rglob("*.png")):
        with Image.open(path) as rgb:
            converted = convert(rgb.convert("RGB"))
        converted.save(path.with_suffix(".tiff") if converted.mode == "CMYK" else path)
        if converted.mode == "CMYK":
            path.unlink()
    if any((real_export / PATIENT).rglob("*.tiff")):
        text = (real_export / PATIENT / TRANSITIONS_FILE).read_text()
        (real_export / PATIENT / TRANSITIONS_FILE).write_text(text.replace(".png", ".tiff"))
    datasets = build_datasets(prepare_data(config.data), config.data, normalize_images=False)
    for name, dataset in reference.items():
        for index in range(len(dataset)):
            for key in ("image_t1", "image_t2"):
                expected, got = dataset[index][key].int(), datasets[name][index][key].int()
                assert (expected - got).abs().max() <= 1, (name, index, key)
