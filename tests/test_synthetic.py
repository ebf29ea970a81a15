"""The phantom generator: real export format, determinism, reuse, physical labels, and images that carry the pose."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from cardiac_dreamer.config import LossConfig
from cardiac_dreamer.data.dataset import TransitionsDataset
from cardiac_dreamer.data.normalization import NormalizationStats
from cardiac_dreamer.data.records import read_records
from cardiac_dreamer.errors import ConfigError
from cardiac_dreamer.losses import compute_losses
from cardiac_dreamer.models import CardiacDreamer
from cardiac_dreamer.synthetic import MARKER_FILE, POSE_LIMITS, generate_phantom

IMAGE_SIZE, STEPS, BATCH, LR = 32, 300, 16, 3e-3  # the learnability test's training budget
MAX_MAE_RATIO = 0.85  # model MAE / training-mean MAE averaged over the 6 axes (measured: 0.78)
EXPORT_KEYS = {"ft1_image_path", "ft2_image_path", "at1_6dof", "action_change_6dof", "at2_6dof", "frame_t1", "frame_t2"}


@pytest.fixture(scope="module")
def phantom(tmp_path_factory):
    """Three small patients: the folders and the parsed entries of each."""
    folders = generate_phantom(tmp_path_factory.mktemp("phantom"), num_patients=3, pairs_per_patient=20, image_size=64)
    return folders, [json.loads((f / "transitions_dataset.json").read_text()) for f in folders]


def _image(folder: Path, relative: str) -> np.ndarray:
    return np.asarray(Image.open(folder / relative.replace("\\", "/")))


def test_writes_numbered_patient_folders_with_the_requested_pairs(phantom):
    folders, entries = phantom
    assert [f.name for f in folders] == ["phantom_01", "phantom_02", "phantom_03"]
    assert [len(e) for e in entries] == [20, 20, 20]


def test_entries_have_the_export_keys_and_windows_paths(phantom):
    _, entries = phantom
    for entry in entries[0]:
        assert set(entry) == EXPORT_KEYS
        assert entry["ft1_image_path"].startswith("ft1\\") and entry["ft2_image_path"].startswith("ft2\\")
        assert entry["ft1_image_path"].endswith(f"_{entry['frame_t1']:04d}.png")
        assert entry["ft2_image_path"].endswith(f"_{entry['frame_t2']:04d}.png")


def test_images_are_rgb_pngs_of_image_size_with_grayscale_content(phantom):
    folders, entries = phantom
    for key in ("ft1_image_path", "ft2_image_path"):
        path = folders[0] / entries[0][0][key].replace("\\", "/")
        image = Image.open(path)
        assert (image.format, image.mode, image.size) == ("PNG", "RGB", (64, 64))
        pixels = np.asarray(image)
        assert (pixels[..., 0] == pixels[..., 1]).all() and (pixels[..., 0] == pixels[..., 2]).all()
        assert pixels.std() > 10  # not blank


def test_labels_are_additive_after_the_json_round_trip(phantom):
    _, entries = phantom
    for entry in (e for patient in entries for e in patient):
        at1, move, at2 = (np.array(entry[k]) for k in ("at1_6dof", "action_change_6dof", "at2_6dof"))
        np.testing.assert_allclose(at1 + move, at2, rtol=0, atol=1e-6)


def test_labels_are_physical_poses_within_the_limits(phantom):
    _, entries = phantom
    poses = np.array([e[k] for patient in entries for e in patient for k in ("at1_6dof", "at2_6dof")])
    assert (np.abs(poses) <= POSE_LIMITS).all()
    assert (poses.std(axis=0) > 0.1 * POSE_LIMITS).all()  # the probe really wanders on every axis


def test_a_frame_shared_by_two_pairs_has_one_pose(phantom):
    """Pairs (k, k+gap) reuse frames, as the real exports do; a frame's label never depends on the pair."""
    _, entries = phantom
    pose_of = {}
    for entry in entries[0]:
        for frame, pose in ((entry["frame_t1"], entry["at1_6dof"]), (entry["frame_t2"], entry["at2_6dof"])):
            assert pose_of.setdefault(frame, pose) == pose
    assert len(pose_of) < 2 * len(entries[0])


def test_same_seed_gives_identical_files(tmp_path):
    first = generate_phantom(tmp_path / "a", num_patients=1, pairs_per_patient=4, image_size=32, seed=3)[0]
    second = generate_phantom(tmp_path / "b", num_patients=1, pairs_per_patient=4, image_size=32, seed=3)[0]
    files = sorted(p.relative_to(first) for p in first.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(second) for p in second.rglob("*") if p.is_file())
    for relative in files:
        assert (first / relative).read_bytes() == (second / relative).read_bytes()


def test_different_seeds_give_different_patients(tmp_path):
    first = generate_phantom(tmp_path / "a", num_patients=1, pairs_per_patient=4, image_size=32, seed=0)[0]
    second = generate_phantom(tmp_path / "b", num_patients=1, pairs_per_patient=4, image_size=32, seed=1)[0]
    entries = [json.loads((f / "transitions_dataset.json").read_text()) for f in (first, second)]
    assert entries[0][0]["at1_6dof"] != entries[1][0]["at1_6dof"]
    path = entries[0][0]["ft1_image_path"]
    assert not np.array_equal(_image(first, path), _image(second, path))


def test_a_complete_phantom_is_reused_without_rewriting(tmp_path):
    folders = generate_phantom(tmp_path, num_patients=2, pairs_per_patient=3, image_size=32)
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    stamps = {p: p.stat().st_mtime_ns for p in files}
    assert generate_phantom(tmp_path, num_patients=2, pairs_per_patient=3, image_size=32) == folders
    assert {p: p.stat().st_mtime_ns for p in files} == stamps
    assert (tmp_path / MARKER_FILE).is_file() and not list(tmp_path.glob(f"phantom_*/{MARKER_FILE}"))


def test_other_parameters_replace_the_previous_phantom(tmp_path):
    generate_phantom(tmp_path, num_patients=3, pairs_per_patient=3, image_size=32)
    folders = generate_phantom(tmp_path, num_patients=2, pairs_per_patient=5, image_size=32)
    assert sorted(tmp_path.glob("phantom_*")) == folders  # phantom_03 is gone
    assert len(json.loads((folders[0] / "transitions_dataset.json").read_text())) == 5


def test_invalid_arguments_raise_config_error(tmp_path):
    with pytest.raises(ConfigError, match="image_size"):
        generate_phantom(tmp_path, image_size=8)


def test_a_small_model_learns_the_pose_across_patients(tmp_path):
    """The issue's criterion: trained briefly on 4 patients, the model predicts at1 of a held-out patient clearly
    better than the training mean does. The cheapest setting that shows it: the "direct" variant at 32 px."""
    torch.manual_seed(0)
    folders = generate_phantom(tmp_path, num_patients=5, pairs_per_patient=600, image_size=IMAGE_SIZE, seed=0)
    names = [f.name for f in folders]
    train, held_out = read_records(tmp_path, names[:4]), read_records(tmp_path, names[4:])
    held_out = held_out[::3]  # consecutive frames are alike; every third is as informative and cheaper
    stats = NormalizationStats.fit(train)
    train_set = TransitionsDataset(train, stats, image_size=IMAGE_SIZE)
    test_set = TransitionsDataset(held_out, stats, image_size=IMAGE_SIZE)
    model = CardiacDreamer(image_size=IMAGE_SIZE, variant="direct", dropout=0.0)
    model.set_normalization(stats)
    optimizer = torch.optim.Adam(model.parameters(), lr=LR)
    order = torch.Generator().manual_seed(0)
    for _ in range(STEPS):
        batch = _collate(train_set, torch.randint(len(train_set), (BATCH,), generator=order).tolist())
        loss = compute_losses(model(batch["image_t1"], batch["action_change"]), batch, LossConfig())["total_loss"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    model.eval()
    batch = _collate(test_set, range(len(test_set)))
    with torch.no_grad():
        predicted = stats.pose.denormalize(model(batch["image_t1"], batch["action_change"])["at1"].double().numpy())
    truth = np.array([r.at1 for r in held_out])
    model_mae = np.abs(predicted - truth).mean(axis=0)  # [6] mm and degrees
    mean_mae = np.abs(np.array(stats.pose.mean) - truth).mean(axis=0)
    assert (model_mae / mean_mae).mean() <= MAX_MAE_RATIO, (model_mae, mean_mae)


def _collate(dataset, indices):
    items = [dataset[i] for i in indices]
    return {k: torch.stack([item[k] for item in items]) for k in ("image_t1", "image_t2", "action_change", "at1", "at2")}
