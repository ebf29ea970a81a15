"""Predictor / load_model: a checkpoint loaded for notebooks, fed any image form exactly like training."""
import re
from pathlib import Path
from typing import Dict, Optional

import numpy as np
import pytest
import torch
from PIL import Image

from cardiac_dreamer.config import Config
from cardiac_dreamer.data import NormalizationStats, PatientSplit, read_grayscale, read_records
from cardiac_dreamer.errors import CheckpointError, ConfigError, DataError
from cardiac_dreamer.evaluation import Predictor, load_model, load_run
from cardiac_dreamer.models import GuidanceModel, build_model
from cardiac_dreamer.io.checkpoint import ModelCheckpoint, save_checkpoint
from cardiac_dreamer.runtime import devices

PHANTOM_SPLIT = PatientSplit(train=["phantom_01", "phantom_02"], val=["phantom_03"], test=["phantom_04"])


def save_tiny_checkpoint(path: Path, data_dir: Path, split: PatientSplit = PHANTOM_SPLIT, variant: str = "dreamer",
                         grouping_file: Optional[Path] = None, grouping: Optional[Dict[str, str]] = None):
    """A small untrained model saved exactly as training saves a model checkpoint (also used by the evaluator and
    CLI tests); statistics fitted on the split's training patients (their folders, with ``grouping``)."""
    torch.manual_seed(0)
    config = Config.from_dict({
        "model": {"variant": variant, "d_model": 32, "num_heads": 2, "num_layers": 1},
        "data": {"data_dir": str(data_dir), "image_size": 64,
                 "grouping_file": str(grouping_file) if grouping_file else None},
    })
    patients = split.train or split.patients()
    folders = [folder for folder, patient in grouping.items() if patient in patients] if grouping else patients
    model = build_model(config, NormalizationStats.fit(read_records(data_dir, folders)))
    return save_checkpoint(path, ModelCheckpoint(
        config=config.to_dict(), model_state=model.state_dict(), epoch=3, global_step=12,
        split=split.to_dict(), data_dir=str(data_dir), grouping=grouping,
    ))


@pytest.fixture(scope="module")
def checkpoint(phantom_dir, tmp_path_factory) -> Path:
    return save_tiny_checkpoint(tmp_path_factory.mktemp("run") / "best.ckpt", phantom_dir)


@pytest.fixture(scope="module")
def predictor(checkpoint) -> Predictor:
    return load_model(checkpoint, device="cpu")


@pytest.fixture(scope="module")
def image_paths(phantom_dir):
    return sorted((phantom_dir / "phantom_01" / "ft1").glob("*.png"))[:2]


@pytest.fixture(scope="module")
def direct_guidance(predictor, image_paths) -> np.ndarray:
    """``predict(image_paths)``, computed once: CPU forward passes are the slow part of these tests."""
    return predictor.predict(image_paths)


@pytest.fixture
def odd_image(tmp_path) -> Path:
    """An RGB image of another size than the model's: conversion and resize both matter."""
    pixels = np.random.default_rng(0).integers(0, 256, (100, 90, 3), dtype=np.uint8)
    path = tmp_path / "frame.png"
    Image.fromarray(pixels).save(path)
    return path


def test_one_image_gives_one_pose_of_six_values(predictor, image_paths):
    assert predictor.predict(image_paths[0]).shape == (6,)


@pytest.mark.parametrize("batch_size", [0, -1, 2.5, None, True])
def test_a_batch_size_that_is_no_whole_number_is_refused_when_built(predictor, batch_size):
    with pytest.raises(ConfigError, match=f"batch_size must be a whole number >= 1, got {batch_size!r}"):
        Predictor(predictor.model, "cpu", batch_size=batch_size)  # 0 failed inside range(), -1 inside torch.cat


def test_a_checkpoint_path_given_for_the_model_points_to_from_checkpoint(checkpoint):
    with pytest.raises(TypeError, match=r"Predictor.from_checkpoint\(path\)"):
        Predictor(str(checkpoint))


def test_a_numpy_batch_in_a_tensors_layout_is_named_as_the_batch_it_is(predictor):
    with pytest.raises(DataError, match=r"a numpy batch must be N x H x W or N x H x W x C .*"
                                        r"got shape \(2, 1, 64, 64\) \(an \[N, C, H, W\] batch is a tensor's layout"):
        predictor.predict(np.zeros((2, 1, 64, 64), np.uint8))  # named the shape of one item, (1, 64, 64)


def test_a_batch_gives_one_pose_per_image(predictor, image_paths, direct_guidance):
    assert direct_guidance.shape == (2, 6)
    assert predictor.predict([str(image_paths[0])]).shape == (1, 6)


def test_files_are_decoded_by_the_training_reader(predictor, odd_image):
    batch, single = predictor.preprocess(odd_image)
    assert single
    assert torch.equal(batch[0, 0], torch.from_numpy(read_grayscale(odd_image, 64)))


@pytest.mark.parametrize(
    "as_input",
    [
        lambda path: Image.open(path),
        lambda path: np.asarray(Image.open(path)),  # H x W x 3 uint8
        lambda path: np.asarray(Image.open(path)).astype(np.float32) / 255.0,  # float in [0, 1]
        lambda path: torch.from_numpy(np.array(Image.open(path).convert("L"))),  # [H, W]
        lambda path: torch.from_numpy(np.array(Image.open(path).convert("L")))[None],  # [1, H, W]
    ],
    ids=["pil", "numpy_rgb", "numpy_float", "tensor_hw", "tensor_1hw"],
)
def test_in_memory_images_are_preprocessed_exactly_like_their_file(predictor, odd_image, as_input):
    expected, _ = predictor.preprocess(odd_image)
    actual, single = predictor.preprocess(as_input(odd_image))
    assert single
    assert torch.equal(actual, expected)


def test_in_memory_images_are_refused_where_their_file_would_be(predictor):
    transparent = Image.new("RGBA", (32, 32), (128, 128, 128, 0))
    with pytest.raises(DataError, match="transparent pixels"):
        predictor.predict(transparent)


def test_stacked_arrays_and_tensors_are_batches(predictor, image_paths):
    expected, _ = predictor.preprocess(image_paths)
    gray = np.stack([np.asarray(Image.open(path).convert("L")) for path in image_paths])  # N x H x W
    for stacked in (gray, torch.from_numpy(gray)[:, None]):  # numpy N x H x W, tensor [N, 1, H, W]
        actual, single = predictor.preprocess(stacked)
        assert not single
        assert torch.equal(actual, expected)


def test_predictions_do_not_depend_on_the_input_form(predictor, image_paths, direct_guidance):
    gray = np.stack([np.asarray(Image.open(path).convert("L")) for path in image_paths])
    np.testing.assert_allclose(predictor.predict(gray), direct_guidance, atol=1e-5)


def test_a_zero_move_imagines_the_pose_the_image_shows(predictor, image_paths, direct_guidance):
    # Additive labels: the pose after no move is the pose at t1.
    np.testing.assert_allclose(predictor.predict(image_paths, np.zeros((2, 6))), direct_guidance, atol=1e-5)


def test_one_move_applies_to_every_image(predictor, image_paths):
    move = np.array([2.0, -1.0, 0.5, 3.0, 0.0, -4.0])
    one_each = predictor.predict(image_paths, np.stack([move] * 2))
    np.testing.assert_allclose(predictor.predict(image_paths, move), one_each, atol=1e-5)


def test_moves_of_the_wrong_count_are_refused(predictor, image_paths):
    with pytest.raises(DataError, match=r"moves must be finite numbers, \[6\] or \[2, 6\] \(one per image\), \(mm, "
                                         r"degrees\) within \+-1e\+06; got shape \[3, 6\]"):
        predictor.predict(image_paths, np.zeros((3, 6)))
    with pytest.raises(DataError, match="moves must be .* got 'left'"):
        predictor.predict(image_paths, "left")


def test_notebook_code_catching_value_error_still_catches_bad_moves_and_a_direct_model_asked_to_imagine(
        predictor, phantom_dir, tmp_path, image_paths):
    with pytest.raises(ValueError, match="moves must be"):  # what predict raised for a bad move before DataError
        predictor.predict(image_paths, "left")
    direct = load_model(save_tiny_checkpoint(tmp_path / "direct.ckpt", phantom_dir, variant="direct"), device="cpu")
    with pytest.raises(ValueError, match="direct"):
        direct.predict(image_paths, np.zeros(6))


def test_a_direct_model_cannot_imagine_moves(phantom_dir, tmp_path, image_paths):
    direct = load_model(save_tiny_checkpoint(tmp_path / "direct.ckpt", phantom_dir, variant="direct"), device="cpu")
    assert direct.predict(image_paths).shape == (2, 6)
    with pytest.raises(ConfigError, match="direct"):
        direct.predict(image_paths, np.zeros(6))


def test_normalized_float_images_are_refused(predictor):
    with pytest.raises(DataError, match=r"\[0, 1\]"):
        predictor.predict(np.full((64, 64), -0.5, dtype=np.float32))


@pytest.mark.parametrize("pixels", [np.full((64, 64), np.nan, dtype=np.float32),
                                    np.where(np.eye(64) > 0, np.nan, 0.5).astype(np.float32)])
def test_a_frame_with_nan_pixels_is_refused_not_read_as_black(predictor, pixels):
    with pytest.raises(DataError, match="NaN"):
        predictor.predict(pixels)


def test_a_gray_and_alpha_array_is_one_image_like_its_pil_image(predictor, odd_image):
    opaque = np.asarray(Image.open(odd_image).convert("LA"))  # H x W x 2
    expected, _ = predictor.preprocess(Image.open(odd_image).convert("LA"))
    actual, single = predictor.preprocess(opaque)
    assert single and torch.equal(actual, expected)


def test_channels_first_and_half_precision_tensors_are_read_like_their_image(predictor, odd_image):
    rgb = np.array(Image.open(odd_image).convert("RGB"))
    expected, _ = predictor.preprocess(rgb)
    channels_first = torch.from_numpy(rgb).permute(2, 0, 1)  # [3, H, W], torchvision's layout
    assert torch.equal(predictor.preprocess(channels_first)[0], expected)
    gray = np.asarray(Image.open(odd_image).convert("L"))
    as_bf16 = torch.from_numpy(gray / 255.0).to(torch.bfloat16)  # rounds the pixels a little, but reads
    assert predictor.preprocess(as_bf16)[0].shape == (1, 1, 64, 64)


def test_gray_frames_stacked_as_a_3d_tensor_are_refused_not_read_as_one_colour_image(predictor, image_paths):
    gray = torch.from_numpy(np.stack([np.asarray(Image.open(path).convert("L")) for path in image_paths * 2]))
    with pytest.raises(DataError, match=r"\[N, 1, H, W\]"):
        predictor.predict(gray[:2])  # [2, H, W]
    assert predictor.predict(gray[:, None]).shape == (4, 6)


@pytest.mark.parametrize("make", [lambda: torch.empty(64, 64, device="meta"), lambda: torch.eye(64).to_sparse(),
                                  lambda: torch.eye(64)[None, None].to_sparse()])
def test_a_tensor_without_dense_pixels_is_a_data_error(predictor, make):
    # it raised NotImplementedError (meta) or TypeError (sparse), where the API promises a DataError
    with pytest.raises(DataError, match="must hold its pixels densely"):
        predictor.predict(make())
    with pytest.raises(DataError, match="must hold its pixels densely"):
        predictor.predict([make()])


@pytest.mark.parametrize("moves, got", [(torch.empty(6, device="meta"), "a meta tensor"),
                                        (torch.eye(6)[0].to_sparse(), "a torch.sparse_coo tensor"),
                                        ([-1e20] + [0] * 5, "got -1e+20")])
def test_moves_that_are_no_dense_numbers_in_range_are_a_data_error_naming_them(predictor, image_paths, moves, got):
    with pytest.raises(DataError, match=re.escape(got)):
        predictor.predict(image_paths[0], moves)


def test_look_takes_a_batch_of_one_and_refuses_a_larger_one(predictor, image_paths):
    gray = np.stack([np.asarray(Image.open(path).convert("L")) for path in image_paths])  # [2, H, W]
    np.testing.assert_allclose(predictor.look(gray[:1]).pose, predictor.look(gray[0]).pose)
    with pytest.raises(DataError, match="a batch of 2"):
        predictor.look(gray)


@pytest.mark.parametrize("image, words", [(np.zeros((64, 64, 5), np.uint8), "shape (64, 64, 5) is neither one image"),
                                          ("", "an image path is empty")])
def test_a_five_channel_array_and_an_empty_path_are_refused_not_read_as_something_else(predictor, image, words):
    """[64, 64, 5] gave 64 poses (64 images of 64 x 5 px); '' read the current folder as the image."""
    with pytest.raises(DataError, match=re.escape(words)):
        predictor.predict(image)


def test_a_look_gives_the_angles_predict_gives_folded_into_the_circle(checkpoint, image_paths):
    """A model whose roll reads near 200 deg (its training mean there): predict says -160, and so must the look the
    session plans from and the poses it imagines."""
    predictor = Predictor.from_checkpoint(checkpoint, "cpu")
    predictor.model.pose_mean[3] += 200.0
    look = predictor.look(image_paths[0])
    moves = np.array([[0, 0, 0, 0, 0, 0], [0, 0, 0, 60, 0, 0]], dtype=float)
    np.testing.assert_allclose(look.pose, predictor.predict(image_paths[0]), rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(look.imagine(moves), predictor.predict([image_paths[0]] * 2, moves),
                               rtol=1e-5, atol=1e-4)
    assert (np.abs(look.imagine(moves)[:, 3:]) <= 180).all() and (np.abs(look.pose[3:]) <= 180).all()


@pytest.mark.parametrize("image", [None, b"bytes", np.zeros((8, 8, 3), dtype=np.uint16),
                                   np.zeros((8, 8), dtype=np.int32)])
def test_an_unusable_in_memory_image_is_one_data_error(predictor, image):
    with pytest.raises(DataError):
        predictor.predict(image)


def test_a_path_from_a_transitions_file_with_backslashes_is_read(predictor, image_paths):
    windows = image_paths[0].parent.parent / f"ft1\\{image_paths[0].name}"  # as the export's JSON writes it
    np.testing.assert_array_equal(predictor.preprocess(windows)[0], predictor.preprocess(image_paths[0])[0])


def test_a_missing_image_file_names_the_path(predictor, tmp_path):
    with pytest.raises(DataError, match="nowhere.png"):
        predictor.predict(tmp_path / "nowhere.png")


def test_a_predictor_and_its_report_print_what_they_are_in_one_line(predictor, checkpoint):
    from cardiac_dreamer.guidance.session import GuidanceSession

    assert repr(predictor) == "Predictor(variant='dreamer', image_size=64, composition='additive', device='cpu')"
    assert "history=0" in repr(GuidanceSession(predictor)) and "\n" not in repr(GuidanceSession(predictor))


def test_a_foreign_file_is_not_loaded(tmp_path):
    torch.save({"weights": torch.zeros(3)}, tmp_path / "other.ckpt")
    with pytest.raises(CheckpointError, match="not a cardiac_dreamer checkpoint"):
        Predictor.from_checkpoint(tmp_path / "other.ckpt")


def test_load_run_reads_a_checkpoint_or_the_best_one_of_a_run_directory(phantom_dir, tmp_path):
    (tmp_path / "checkpoints").mkdir()
    path = save_tiny_checkpoint(tmp_path / "checkpoints" / "best.ckpt", phantom_dir, variant="direct")
    from_file, from_run = load_run(path), load_run(tmp_path)
    assert from_run.path == path and from_file.config == from_run.config
    assert from_run.config.model.variant == "direct" and from_run.split == PHANTOM_SPLIT
    assert type(from_run.model) is GuidanceModel and not from_run.model.training
    assert from_run.checkpoint.epoch == 3
    assert load_run(tmp_path / "checkpoints").path == path  # the run's checkpoints/ folder given instead


@pytest.mark.parametrize("path", ["", None, 3, b"run/best.ckpt"])
def test_a_checkpoint_path_that_is_no_path_is_refused_not_taken_for_the_current_directory(path, phantom_dir,
                                                                                          tmp_path, monkeypatch):
    (tmp_path / "checkpoints").mkdir()  # a run in the current directory, which "" would have loaded
    save_tiny_checkpoint(tmp_path / "checkpoints" / "best.ckpt", phantom_dir, variant="direct")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(CheckpointError, match=f"^a checkpoint is the path of a .ckpt file or a run directory, "
                                              f"got {re.escape(repr(path))}$"):
        load_model(path)


def test_a_folder_that_is_no_run_names_itself(tmp_path):
    with pytest.raises(CheckpointError, match=f"^{tmp_path}: a directory that holds no run's checkpoints"):
        load_run(tmp_path)


def test_a_sequential_checkpoint_whose_fuser_is_untrained_says_it_guides_by_the_median(phantom_dir, tmp_path,
                                                                                        caplog):
    torch.manual_seed(0)
    config = Config.from_dict({"model": {"variant": "direct", "sequence_frames": 3},
                               "data": {"data_dir": str(phantom_dir), "image_size": 64}})
    model = build_model(config, NormalizationStats.fit(read_records(phantom_dir, PHANTOM_SPLIT.train)))
    path = save_checkpoint(tmp_path / "best.ckpt", ModelCheckpoint(
        config=config.to_dict(), model_state=model.state_dict(), epoch=1, global_step=1,
        split=PHANTOM_SPLIT.to_dict(), data_dir=str(phantom_dir)))
    with caplog.at_level("WARNING"):
        assert load_model(path, device="cpu").sequence_frames == 0
    assert "sequential estimator is untrained" in caplog.text and "averaged.ckpt" in caplog.text


@pytest.fixture
def bf16_cpu(monkeypatch):
    """A CPU taken to have native bf16, so the bf16 path runs on any test machine (slowly where emulated)."""
    monkeypatch.setattr(devices, "cpu_supports_bf16", lambda: True)


def test_bf16_inference_stays_within_its_rounding_of_fp32(bf16_cpu, checkpoint, image_paths, direct_guidance):
    fast = load_model(checkpoint, device="cpu", precision="bf16")
    assert fast.precision.name == "bf16"
    poses = fast.predict(image_paths)
    assert not np.array_equal(poses, direct_guidance)  # it did compute in bf16
    # bf16 keeps 8 bits of mantissa; through an untrained network (poses of up to ~150) that is up to ~2 % here
    np.testing.assert_allclose(poses, direct_guidance, rtol=0.05, atol=0.05)
    look = fast.look(image_paths[0])
    assert look.features.dtype == torch.float32 and look.pooled.numpy().shape == (512,)  # callers get float32
    np.testing.assert_allclose(look.pose, direct_guidance[0], rtol=0.05, atol=0.05)
    moves = np.array([[2.0, -1.0, 0.5, 3.0, 0.0, -4.0], [0.0] * 6])
    imagined_fp32 = load_model(checkpoint, device="cpu").look(image_paths[0]).imagine(moves)
    np.testing.assert_allclose(look.imagine(moves), imagined_fp32, rtol=0.05, atol=0.05)


def test_bf16_falls_back_to_fp32_on_a_cpu_without_it(monkeypatch, checkpoint, image_paths, direct_guidance):
    monkeypatch.setattr(devices, "cpu_supports_bf16", lambda: False)
    fallback = load_model(checkpoint, device="cpu", precision="bf16")
    assert fallback.precision.name == "32"
    np.testing.assert_array_equal(fallback.predict(image_paths), direct_guidance)


def test_an_unknown_precision_is_refused_naming_the_setting(checkpoint):
    with pytest.raises(ConfigError, match="^precision must be 32, 16 or bf16, got '64'"):
        load_model(checkpoint, device="cpu", precision="64")
