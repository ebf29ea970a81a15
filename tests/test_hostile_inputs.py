"""Hostile inputs, made for real on disk (symlink loops, over-long and non-UTF-8 names, crafted PNG headers, deep
JSON, pipes): each is one ``error:`` line naming the file, the entry and the problem, with exit code 2, from both
``cardiac-train --check_data`` and training, and the data and output directories are left exactly as they were."""
import json
import os
import random
import stat
import struct
import subprocess
import sys
import threading
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cardiac_dreamer.cli import train_command as train_cli
from cardiac_dreamer.config import Config
from cardiac_dreamer.data import (
    TRANSITIONS_FILE,
    find_patient_folders,
    read_grayscale,
    read_patient_records,
    read_records,
)
from cardiac_dreamer.data.transforms import MAX_IMAGE_PIXELS, image_to_gray
from cardiac_dreamer.errors import CheckpointError, ConfigError, DataError
from cardiac_dreamer.io.checkpoint import TrainingState, load_checkpoint, save_checkpoint
from cardiac_dreamer.models.backbone import read_weights_file
from test_bad_input import LOG_LINE, PATIENT, Case

OTHER = "data_0513_02"


def png_claiming(width: int, height: int) -> bytes:
    """A real PNG: signature, an IHDR chunk (valid CRC) claiming ``width`` x ``height`` 8-bit gray pixels, a tiny
    IDAT and IEND. A few dozen bytes that a naive decoder would expand to ``width * height`` bytes."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
            + chunk(b"IEND", b""))


def snapshot(*directories: Path) -> dict:
    """Every entry under ``directories`` with its size and modification time, walked by file descriptor so that
    paths longer than the system's limit are seen too (and symlinks are not followed)."""
    state = {}
    for directory in directories:
        for where, folders, files, fd in os.fwalk(directory):
            for name in folders + files:
                info = os.stat(name, dir_fd=fd, follow_symlinks=False)
                state[os.path.join(where, name)] = (info.st_size if stat.S_ISREG(info.st_mode) else None,
                                                    info.st_mtime_ns)
    return state


def make_deep_file(base: Path, depth: int, content: bytes) -> str:
    """A real file ``depth`` folders of 200-character names below ``base``, made relative to open directories
    (a full path that long is refused by the system); returns its path relative to ``base``."""
    parts = [f"{level:03d}" + "d" * 197 for level in range(depth)]
    fd = os.open(base, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for part in parts:
            os.mkdir(part, dir_fd=fd)
            child = os.open(part, os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
            os.close(fd)
            fd = child
        file_fd = os.open("deep.png", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd)
        os.write(file_fd, content)
        os.close(file_fd)
    finally:
        os.close(fd)
    return "/".join(parts + ["deep.png"])


# ------------------------------------------------------------------------------------------------ the cases
# Each makes one hostile input in the Case's world and returns the words its error line must hold.

def label_integer_beyond_any_float(case):
    path = case.set_entry(1, "at1_6dof", [10**400, 0, 0, 0, 0, 0])
    return [f"{path}: entry 1: at1_6dof[0] must be a finite number", "got 1000"]


def label_beyond_a_kilometre(case):
    return [f"{case.set_entry(2, 'at2_6dof', [0, 0, 2e6, 0, 0, 0])}: entry 2: at2_6dof[2]", "within +-1e+06"]


def transitions_file_nested_too_deeply(case):
    return [str(case.write_entries("[" * 100_000)), "invalid JSON: nested too deeply"]


def transitions_file_with_an_integer_too_long_to_convert(case):
    return [str(case.write_entries("[" + "7" * 5000 + "]")), "invalid JSON: Exceeds the limit"]


def transitions_file_is_a_directory(case):
    path = case.json_path()
    path.unlink()
    path.mkdir()
    return [str(path), "transitions file is a directory, not a regular file"]


def transitions_file_is_a_pipe(case):
    path = case.json_path()
    path.unlink()
    os.mkfifo(path)  # reading it would wait forever for a writer
    return [str(path), "transitions file is a special file (pipe, socket or device)"]


def image_path_with_a_nul_character(case):
    path = case.set_entry(1, "ft2_image_path", "ft2/a\0b.png")
    return [f"{path}: entry 1", "contains a NUL character"]


def image_path_that_is_not_utf8(case):
    path = case.set_entry(2, "ft1_image_path", "ft1/\udcff.png")  # json.dumps writes the \udcff escape
    assert "\\udcff" in path.read_text()
    return [f"{path}: entry 2: ft1_image_path", "is not valid UTF-8 text"]


def image_name_longer_than_a_file_name_can_be(case):
    path = case.set_entry(3, "ft2_image_path", "ft2/" + "a" * 300 + ".png")
    return [f"{path}: entry 3: ft2_image_path", "cannot be resolved (File name too long)"]


def image_path_longer_than_a_path_can_be(case):
    relative = make_deep_file(case.data / PATIENT, depth=22, content=case.image(1).read_bytes())
    path = case.set_entry(1, "ft2_image_path", relative)
    return [f"{path}: entry 1: ft2_image_path", "cannot be resolved (File name too long)"]


def image_symlink_loop(case):
    (case.data / PATIENT / "ft2" / "loop.png").symlink_to("loop.png")
    return [f"{case.set_entry(1, 'ft2_image_path', 'ft2/loop.png')}: entry 1", "cannot be resolved"]


def image_symlink_cycle_of_two(case):
    (case.data / PATIENT / "ft1" / "a.png").symlink_to("b.png")
    (case.data / PATIENT / "ft1" / "b.png").symlink_to("a.png")
    return [f"{case.set_entry(0, 'ft1_image_path', 'ft1/a.png')}: entry 0", "cannot be resolved"]


def image_path_is_a_directory(case):
    return [f"{case.set_entry(2, 'ft1_image_path', 'ft1')}: entry 2", "is not a regular file"]


def patient_folder_symlink_loop(case):
    (case.data / "data_0513_09").symlink_to("data_0513_09")
    return [str(case.data / "data_0513_09"), "cannot inspect this entry of the data directory"]


def patient_folder_broken_symlink(case):
    (case.data / "data_0513_09").symlink_to(case.root / "unmounted_drive" / "data_0513_09")
    return [str(case.data / "data_0513_09"), "broken symbolic link"]


def patient_folder_name_not_utf8(case):
    target = os.fsencode(case.data) + b"/data_\xff"
    try:
        os.rename(case.data / "data_0513_03", target)
    except OSError:
        pytest.skip("this filesystem refuses names that are not UTF-8")
    return [f"patient folder {target!r}", "the name is not valid UTF-8"]


def image_shared_with_another_patient_through_a_symlink(case):
    shared = case.data / OTHER / "ft2" / "shared.png"
    shared.symlink_to(case.data / PATIENT / "ft1" / "frames_0513_01_0000.png")
    entries = case.entries(OTHER)
    entries[1]["ft2_image_path"] = "ft2/shared.png"
    path = case.write_entries(entries, OTHER)
    return [f"error: {shared}: ft2_image_path of {path}: entry 1 (patient '{OTHER}') is a link to",
            f"an image of patient '{PATIENT}' ({case.json_path()}: entry 0)"]


def patient_folder_linked_under_a_second_name(case):
    (case.data / "data_0513_00").symlink_to(PATIENT)  # read first: the link is named first all the same
    return [f"error: {case.data / 'data_0513_00'}/",
            f"of {case.json_path('data_0513_00')}: entry 0 (patient 'data_0513_00') is a link to",
            f"an image of patient '{PATIENT}' ({case.json_path(PATIENT)}: entry 0)"]


def png_header_claiming_gigapixels(case):
    case.image(1).write_bytes(png_claiming(100_000, 100_000))
    return [f"{case.json_path()}: entry 1", str(case.image(1)),
            f"image too large: its header claims more pixels than the {MAX_IMAGE_PIXELS}-pixel limit"]


def png_header_in_the_range_pil_only_warns_about(case):
    case.image(1).write_bytes(png_claiming(10_000, 10_000))
    return [f"{case.json_path()}: entry 1", str(case.image(1)),
            f"image too large: its header claims more pixels than the {MAX_IMAGE_PIXELS}-pixel limit"]


def png_header_beyond_our_limit(case):
    case.image(2).write_bytes(png_claiming(8000, 6000))
    return [str(case.image(2)), f"image of 8000x6000 pixels is larger than the {MAX_IMAGE_PIXELS}-pixel limit"]


def png_header_of_zero_width(case):
    case.image(2).write_bytes(png_claiming(0, 64))
    return [str(case.image(2)), "cannot decode image"]


def tiff_in_a_colour_space_without_gray(case):
    path = case.image(1).with_suffix(".tiff")
    Image.new("LAB", (64, 64), (50, 0, 0)).save(path)
    case.set_entry(1, "ft2_image_path", f"ft2/{path.name}")
    return [str(path), "cannot use image (LAB"]


def grouping_file_nested_too_deeply(case):
    grouping = case.root / "grouping.json"
    grouping.write_text("{\"a\": " * 100_000)
    case.args += ["--grouping_file", str(grouping)]
    return [str(grouping), "invalid JSON: nested too deeply"]


def grouping_file_is_a_directory(case):
    grouping = case.root / "grouping.json"
    grouping.mkdir()
    case.args += ["--grouping_file", str(grouping)]
    return [str(grouping), "grouping file is a directory"]


def grouping_patient_id_not_utf8(case):
    grouping = case.root / "grouping.json"
    grouping.write_text(json.dumps({PATIENT: "anna\udcff"}))
    case.args += ["--grouping_file", str(grouping)]
    return [str(grouping), f"patient id of folder '{PATIENT}'", "is not valid UTF-8 text"]


def config_nan_gradient_clip(case):
    case.args += ["--set", "training.gradient_clip_val=.nan"]
    return ["training.gradient_clip_val must be in [0, 1e+09], got nan"]


def config_nan_learning_rate_flag(case):
    case.args += ["--lr", "nan"]
    return ["training.lr must be in (0, 10], got nan"]


def config_negative_min_lr(case):
    case.args += ["--set", "training.scheduler=cosine", "--set", "training.min_lr=-1"]
    return ["training.min_lr must be in [0, 10], got -1"]


def config_seed_beyond_numpy(case):
    case.args += ["--seed", str(2**64)]
    return ["training.seed must be in [0, 4294967295], got 18446744073709551616"]


def config_model_no_machine_holds(case):
    path = case.config_file("model:\n  d_model: 1000000000\n")
    return [str(path), "model.d_model must be in [1, 4096], got 1000000000"]


def config_image_size_no_machine_holds(case):
    case.args += ["--image_size", str(2**20)]
    return ["data.image_size must be in [32, 1024], got 1048576"]


def checkpoint_config_asking_for_a_huge_model(case):
    path = case.output / "run_1" / "checkpoints" / "last.ckpt"
    path.parent.mkdir(parents=True)
    config = Config().to_dict()
    config["model"].update(d_model=10**9, num_layers=10**6)
    save_checkpoint(path, TrainingState(config=config, model_state={}, epoch=0, global_step=0))
    case.args += ["--resume_from_checkpoint", str(path)]
    return [f"{path} config: model.d_model must be in [1, 4096], got 1000000000"]


CASES = [
    label_integer_beyond_any_float, label_beyond_a_kilometre, transitions_file_nested_too_deeply,
    transitions_file_with_an_integer_too_long_to_convert, transitions_file_is_a_directory, transitions_file_is_a_pipe,
    image_path_with_a_nul_character, image_path_that_is_not_utf8, image_name_longer_than_a_file_name_can_be,
    image_path_longer_than_a_path_can_be, image_symlink_loop, image_symlink_cycle_of_two, image_path_is_a_directory,
    patient_folder_symlink_loop, patient_folder_broken_symlink, patient_folder_name_not_utf8,
    image_shared_with_another_patient_through_a_symlink, patient_folder_linked_under_a_second_name,
    png_header_claiming_gigapixels, png_header_in_the_range_pil_only_warns_about, png_header_beyond_our_limit,
    png_header_of_zero_width, tiff_in_a_colour_space_without_gray, grouping_file_nested_too_deeply,
    grouping_file_is_a_directory, grouping_patient_id_not_utf8, config_nan_gradient_clip,
    config_nan_learning_rate_flag, config_negative_min_lr, config_seed_beyond_numpy, config_model_no_machine_holds,
    config_image_size_no_machine_holds, checkpoint_config_asking_for_a_huge_model,
]


@pytest.fixture
def case(tmp_path, make_real_export) -> Case:
    return Case(tmp_path, make_real_export(tmp_path / "data", pairs=4, size=64))


@pytest.mark.parametrize("command", ["check_data", "train"])
@pytest.mark.parametrize("make_hostile", CASES, ids=[c.__name__ for c in CASES])
def test_hostile_input_is_one_error_line_and_changes_nothing(case, make_hostile, command, capsys):
    words = make_hostile(case)
    if command == "check_data" and "--resume_from_checkpoint" in case.args:
        pytest.skip("--check_data reads no checkpoint: with --resume_from_checkpoint it is a usage error "
                    "(tests/test_cli_train.py)")
    before = snapshot(case.data, case.output)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a warning that escapes would be a second line on a terminal
        code = train_cli.main((["--check_data"] if command == "check_data" else []) + case.args)
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err, err
    for word in words:
        assert word in lines[0], f"{word!r} not in {lines[0]!r}"
    assert snapshot(case.data, case.output) == before


def test_the_console_command_prints_only_the_error_line_for_a_header_pil_would_warn_about(case):
    words = png_header_in_the_range_pil_only_warns_about(case)
    result = subprocess.run([sys.executable, "-m", "cardiac_dreamer.train", "--check_data", *case.args],
                            capture_output=True, text=True, timeout=300)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error: ")]
    assert result.returncode == 2 and "Traceback" not in result.stderr and "Warning" not in result.stderr
    assert len(errors) == 1 and all(w in errors[0] for w in words), result.stderr
    assert all(LOG_LINE.match(line) for line in lines if line not in errors), result.stderr


# ------------------------------------------------------------------------------------------ library level

def test_a_folder_whose_name_is_not_utf8_and_holds_no_transitions_file_is_ignored_like_any_other(real_export):
    try:
        os.mkdir(os.fsencode(real_export) + b"/notes_\xff")
    except OSError:
        pytest.skip("this filesystem refuses names that are not UTF-8")
    assert find_patient_folders(real_export) == ["data_0513_01", "data_0513_02", "data_0513_03"]


def test_folders_of_one_patient_may_share_images(real_export):
    (real_export / OTHER / "ft2" / "shared.png").symlink_to(real_export / PATIENT / "ft1" / "frames_0513_01_0000.png")
    path = real_export / OTHER / TRANSITIONS_FILE
    entries = json.loads(path.read_text())
    entries[1]["ft2_image_path"] = "ft2/shared.png"
    path.write_text(json.dumps(entries))
    records = read_records(real_export, grouping={PATIENT: "anna", OTHER: "anna"})
    assert len(records) == 12


def test_a_hostile_file_name_is_shortened_in_the_message(real_export):
    path = real_export / PATIENT / TRANSITIONS_FILE
    entries = json.loads(path.read_text())
    entries[0]["ft1_image_path"] = "ft1/" + "x" * 1_000_000 + "\0"
    path.write_text(json.dumps(entries))
    with pytest.raises(DataError) as error:
        read_patient_records(real_export, PATIENT)
    assert len(str(error.value)) < 400 and "contains a NUL character" in str(error.value)


@pytest.mark.parametrize("width, height", [(100_000, 100_000), (10_000, 10_000), (8000, 6000)])
def test_an_oversized_header_is_refused_before_decoding_and_no_pil_warning_escapes(tmp_path, width, height):
    path = tmp_path / "bomb.png"
    path.write_bytes(png_claiming(width, height))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(DataError, match=f"{path}: image (too large|of {width}x{height} pixels)"):
            read_grayscale(path, 64)


def test_an_in_memory_image_without_pixels_is_a_data_error():
    with pytest.raises(DataError, match=r"frame: image has no pixels \(0x0\)"):
        image_to_gray(Image.new("L", (0, 0)), 64, source="frame")


def test_an_oversized_in_memory_image_is_refused_without_talking_of_a_file_header():
    side = int(MAX_IMAGE_PIXELS ** 0.5) + 1  # a 5793 x 5793 frame, 34 MB of zeros in memory
    with pytest.raises(DataError) as refused:
        image_to_gray(Image.new("L", (side, side)), 64, source="frame")
    limit = f"{MAX_IMAGE_PIXELS}-pixel limit"
    assert str(refused.value) == f"frame: image of {side}x{side} pixels is larger than the {limit}"


def _valid_images(tmp_path: Path) -> list:
    """Small images in the formats PIL decodes with the most involved parsers."""
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)
    paths = []
    for name, kwargs in (("a.png", {}), ("a.tiff", {"compression": "tiff_lzw"}), ("a.gif", {}), ("a.bmp", {}),
                         ("a.jpg", {"quality": 90})):
        Image.fromarray(pixels).save(tmp_path / name, **kwargs)
        paths.append(tmp_path / name)
    return paths


@pytest.mark.filterwarnings("ignore::UserWarning")  # PIL warns about the corrupt TIFF metadata it skips
def test_corrupted_bytes_in_any_format_give_a_data_error_or_a_valid_image_never_another_exception(tmp_path):
    rng = random.Random(0)
    target = tmp_path / "fuzzed"
    for original in _valid_images(tmp_path):
        data = original.read_bytes()
        for trial in range(60):
            mutated = bytearray(data)
            for _ in range(rng.randint(1, 8)):
                mutated[rng.randrange(len(mutated))] = rng.randrange(256)
            if trial % 3 == 0:
                mutated = mutated[: rng.randrange(1, len(mutated))]
            path = target.with_suffix(original.suffix)
            path.write_bytes(bytes(mutated))
            try:
                image = read_grayscale(path, 16)
            except DataError as error:
                assert str(path) in str(error) and "\n" not in str(error)
            else:
                assert image.shape == (16, 16) and image.dtype == np.uint8


@pytest.mark.parametrize("read, what, error", [
    (lambda path: read_grayscale(path, 16), "image", DataError),  # predict, a session's update, the data checks
    (lambda path: read_weights_file(path), "backbone weights file", ConfigError),  # model.pretrained_weights
    (lambda path: load_checkpoint(path), "checkpoint", CheckpointError),  # cardiac-evaluate --checkpoint
])
def test_a_pipe_given_as_a_file_is_refused_at_once_not_read_for_ever(tmp_path, read, what, error):
    pipe = tmp_path / "named_pipe"
    os.mkfifo(pipe)  # no writer: a read would wait for ever
    outcome = []
    reader = threading.Thread(target=lambda: outcome.append(_raised(read, pipe)), daemon=True)
    reader.start()
    reader.join(timeout=20)
    assert not reader.is_alive(), f"reading a pipe as a {what} blocked"
    assert isinstance(outcome[0], error) and f"{pipe}: {what} is a special file" in str(outcome[0])


def _raised(read, path):
    try:
        read(path)
    except Exception as raised:  # the test asserts its type
        return raised
    return None
