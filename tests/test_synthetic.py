"""The phantom generator: real export format, determinism, reuse, physical labels, images that carry the pose,
a public patient that renders any pose exactly as the written frames, the trajectory modes, the old phantom (v3)
still reachable, and safe concurrent generation. Phantom v4's realism is checked in test_phantom_v4.py."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
import pytest
from PIL import Image

from cardiac_dreamer.data.chains import MAX_FRAME_STEP
from cardiac_dreamer.errors import ConfigError, DataError, OutputError
from cardiac_dreamer.synthetic import (
    MARKER_FILE, MOVE_LIMITS, PATIENT_FILE, POSE_LIMITS, PhantomPatient, generate_phantom,
)

EXPORT_KEYS = {"ft1_image_path", "ft2_image_path", "at1_6dof", "action_change_6dof", "at2_6dof", "frame_t1", "frame_t2"}
MANY_PAIRS = 1000  # enough for a correlation of 0 to read within +-0.1 (3 standard errors)


@pytest.fixture(scope="module")
def phantom(tmp_path_factory):
    """Three small patients (v4 sweeps, the default): the folders and the parsed entries of each."""
    folders = generate_phantom(tmp_path_factory.mktemp("phantom"), num_patients=3, pairs_per_patient=20, image_size=64)
    return folders, [_entries(folder) for folder in folders]


@pytest.fixture(scope="module")
def sonographer(tmp_path_factory):
    """One patient scanned as a sonographer would: a walk back to the view, frames shared between pairs."""
    folder = generate_phantom(tmp_path_factory.mktemp("sonographer"), num_patients=1, frames_per_patient=40,
                              image_size=32, trajectory="sonographer")[0]
    return folder, _entries(folder)


@pytest.fixture(scope="module")
def random_pairs(tmp_path_factory):
    """The entries of one patient of 40 independent random pairs."""
    return _entries(generate_phantom(tmp_path_factory.mktemp("random"), num_patients=1, pairs_per_patient=40,
                                     image_size=16, trajectory="random")[0])


def _entries(folder: Path) -> list:
    return json.loads((folder / "transitions_dataset.json").read_text())


def _image(folder: Path, relative: str) -> np.ndarray:
    return np.asarray(Image.open(folder / relative.replace("\\", "/")))


def _labels(entries: list):
    """``at1, move, at2``, each ``[P, 6]``."""
    return (np.array([entry[key] for entry in entries]) for key in ("at1_6dof", "action_change_6dof", "at2_6dof"))


def _correlations(moves: np.ndarray, poses: np.ndarray) -> np.ndarray:
    """Per-axis Pearson correlation ``[6]`` between the move and the pose it starts from."""
    return np.array([np.corrcoef(moves[:, axis], poses[:, axis])[0, 1] for axis in range(6)])


def test_writes_numbered_patient_folders_with_the_requested_pairs(phantom):
    folders, entries = phantom
    assert [f.name for f in folders] == ["phantom_01", "phantom_02", "phantom_03"]
    assert [len(e) for e in entries] == [20, 20, 20]


def test_entries_have_the_export_keys_and_windows_paths(phantom, sonographer):
    """Shared frames are named after the frame; a sweep pair's two files after its t1 frame (within the sweep)."""
    for entry in phantom[1][0]:
        assert set(entry) == EXPORT_KEYS
        assert entry["ft1_image_path"].startswith("ft1\\") and entry["ft2_image_path"].startswith("ft2\\")
        assert entry["ft1_image_path"].endswith(f"_01_{entry['frame_t1']:04d}.png")
        assert entry["ft2_image_path"][4:] == entry["ft1_image_path"][4:]
    for entry in sonographer[1]:
        assert entry["ft1_image_path"].endswith(f"_{entry['frame_t1']:04d}.png")
        assert entry["ft2_image_path"].endswith(f"_{entry['frame_t2']:04d}.png")


def test_every_sweep_pair_has_its_own_two_files(phantom):
    """As in a real export: no file is shared between pairs, and each pair's files exist."""
    folder, entries = phantom[0][0], phantom[1][0]
    for side in ("ft1", "ft2"):
        paths = [entry[f"{side}_image_path"] for entry in entries]
        assert len(set(paths)) == len(entries)
        assert len(list((folder / side).glob("*.png"))) == len(entries)


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


def test_random_labels_are_physical_poses_within_the_limits(random_pairs):
    poses = np.array([e[k] for e in random_pairs for k in ("at1_6dof", "at2_6dof")])
    assert (np.abs(poses) <= POSE_LIMITS).all()
    assert (poses.std(axis=0) > 0.1 * POSE_LIMITS).all()  # the probe really wanders on every axis


def test_random_pairs_use_their_own_frames(random_pairs):
    """No frame serves two random pairs: each pair is an independent draw."""
    frames = [entry[key] for entry in random_pairs for key in ("frame_t1", "frame_t2")]
    assert len(set(frames)) == 2 * len(random_pairs)


def test_random_pairs_are_numbered_too_far_apart_to_be_chained_into_a_sweep(random_pairs):
    # numbered on, t2 of one pair beside t1 of the next read as a sweep jumping ~13 mm / ~19 deg in one frame: a
    # move that gives the pose away to the sequential estimator
    for before, after in zip(random_pairs, random_pairs[1:]):
        assert after["frame_t2"] - after["frame_t1"] == 1
        assert after["frame_t1"] - before["frame_t2"] > MAX_FRAME_STEP


def test_a_frame_shared_by_two_pairs_has_one_pose(sonographer):
    """Sonographer pairs (k, k+gap) reuse frames, as the real exports do; a frame's label never depends on the pair."""
    _, entries = sonographer
    pose_of = {}
    for entry in entries:
        for frame, pose in ((entry["frame_t1"], entry["at1_6dof"]), (entry["frame_t2"], entry["at2_6dof"])):
            assert pose_of.setdefault(frame, pose) == pose
    assert len(pose_of) < 2 * len(entries)
    assert {entry["frame_t2"] for entry in entries} & {entry["frame_t1"] for entry in entries}


def test_pairs_or_frames_per_patient_set_the_size_of_a_patient(tmp_path):
    random = generate_phantom(tmp_path / "random", num_patients=1, frames_per_patient=30, image_size=16)[0]
    walk = generate_phantom(tmp_path / "walk", num_patients=1, pairs_per_patient=30, image_size=16,
                            trajectory="sonographer")[0]
    assert len(_entries(random)) == 15  # two frames a pair
    assert len(_entries(walk)) == 30
    assert len(list((walk / "ft1").glob("*.png"))) == 30  # pairs drawn along the walk, one starting at each frame


def test_random_moves_are_independent_of_the_start_pose(tmp_path):
    """The move says nothing about at1, so a model cannot read the pose from the action."""
    folder = generate_phantom(tmp_path, num_patients=1, pairs_per_patient=MANY_PAIRS, image_size=16,
                              trajectory="random")[0]
    at1, move, _ = _labels(_entries(folder))
    assert (np.abs(move) <= MOVE_LIMITS + 1e-9).all()
    correlation = _correlations(move, at1)
    assert (np.abs(correlation) < 0.1).all(), correlation


def test_sonographer_moves_lead_back_to_the_view(tmp_path):
    """Like a real scan drifting back to the standard view: the move correlates negatively with at1 (leaky)."""
    folder = generate_phantom(tmp_path, num_patients=1, pairs_per_patient=MANY_PAIRS, image_size=16,
                              trajectory="sonographer")[0]
    at1, move, at2 = _labels(_entries(folder))
    assert (np.abs(at2) <= POSE_LIMITS).all()
    correlation = _correlations(move, at1)
    assert (correlation < -0.1).all(), correlation


def test_render_is_reproducible_for_a_generator_state_and_fresh_otherwise():
    patient = PhantomPatient(1, seed=0)
    pose = [3.0, -2.0, 1.0, 5.0, -4.0, 6.0]
    first = patient.render(pose, 48, np.random.default_rng(7))
    assert first.shape == (48, 48) and first.dtype == np.uint8
    assert np.array_equal(first, patient.render(pose, 48, np.random.default_rng(7)))
    assert not np.array_equal(first, patient.render(pose, 48, np.random.default_rng(8)))  # new speckle
    assert not np.array_equal(patient.render(pose, 48), patient.render(pose, 48))  # no generator: fresh each call


def test_the_patient_renders_exactly_the_written_frames(phantom, sonographer):
    """The frame of pose ``at`` is ``render(at, rng=frame_rng(frame), cycle=frame_cycle(frame))``, for sweep pairs
    and shared (sonographer) frames."""
    for folder, entries in ((phantom[0][1], phantom[1][1]), sonographer):
        patient = PhantomPatient.from_folder(folder)
        for entry in entries[:4]:
            for side in ("1", "2"):
                frame, pose = entry[f"frame_t{side}"], entry[f"at{side}_6dof"]
                written = _image(folder, entry[f"ft{side}_image_path"])[..., 0]
                rendered = patient.render(pose, rng=patient.frame_rng(frame), cycle=patient.frame_cycle(frame))
                assert np.array_equal(rendered, written)


def test_from_folder_rebuilds_the_patient_that_the_folder_describes(phantom):
    folder = phantom[0][1]
    rebuilt = PhantomPatient.from_folder(folder)
    assert (rebuilt.index, rebuilt.seed, rebuilt.image_size) == (2, 0, 64)
    pose = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]
    direct = PhantomPatient(2, seed=0).render(pose, 64, np.random.default_rng(0))
    assert np.array_equal(rebuilt.render(pose, rng=np.random.default_rng(0)), direct)
    assert not np.array_equal(PhantomPatient(3, seed=0).render(pose, 64, np.random.default_rng(0)), direct)


@pytest.mark.parametrize("folder", [None, 5])
def test_from_folder_refuses_what_is_no_path_in_one_line(folder):
    with pytest.raises(ConfigError, match=f"from_folder takes a patient folder's path, got {folder!r}"):
        PhantomPatient.from_folder(folder)  # pathlib's TypeError named no argument


def test_from_folder_refuses_a_folder_of_another_generator_version(tmp_path, phantom):
    description = json.loads((phantom[0][0] / PATIENT_FILE).read_text())
    (tmp_path / PATIENT_FILE).write_text(json.dumps(dict(description, generator_version=2)))
    with pytest.raises(DataError, match="version 2"):
        PhantomPatient.from_folder(tmp_path)
    with pytest.raises(DataError, match="phantom description"):
        PhantomPatient.from_folder(tmp_path / "missing")
    (tmp_path / PATIENT_FILE).write_text(json.dumps({k: v for k, v in description.items() if k != "seed"}))
    with pytest.raises(DataError, match=r"unusable phantom description \(no seed\)$"):  # was a bare "('seed')"
        PhantomPatient.from_folder(tmp_path)


@pytest.mark.parametrize("change, named", [
    ({"seed": 1.7}, "seed must be a whole number in 0..9,223,372,036,854,775,807, got 1.7"),  # 1 is another heart
    ({"seed": float("inf")}, "seed must be a whole number"),
    ({"image_size": "64"}, "image_size must be in 16..1024, got '64'"),
    ({"patient_index": True}, "patient index (1-based) must be a whole number"),
    ({"generator_version": [6]}, "written by phantom generator version [6]"),
    ({"generator_version": "6"}, "written by phantom generator version '6'"),
])
def test_a_crafted_patient_description_is_one_line_naming_the_value(tmp_path, phantom, change, named):
    description = json.loads((phantom[0][0] / PATIENT_FILE).read_text())
    (tmp_path / PATIENT_FILE).write_text(json.dumps(dict(description, **change)))
    with pytest.raises(DataError) as refused:
        PhantomPatient.from_folder(tmp_path)
    assert str(refused.value).startswith(f"{tmp_path / PATIENT_FILE}: ") and named in str(refused.value)


@pytest.mark.parametrize("arguments, rule", [
    ({"pose": "abc"}, "a pose is 6 finite numbers (mm, degrees) within +-1e+06, got 'abc'"),
    ({"pose": [0.0] * 5}, "a pose is 6 finite numbers"),
    ({"pose": ["0"] * 6}, "a pose is 6 finite numbers"),  # text numpy would read as numbers
    ({"pose": [True] * 6}, "a pose is 6 finite numbers"),
    ({"pose": [1e300, 0, 0, 0, 0, 0]}, "a pose is 6 finite numbers"),  # rendered black, with overflow warnings
    ({"pose": [0.0] * 6, "cycle": (0.5,)}, "cycle is 2 finite numbers (cardiac, breathing phase in cycles)"),
    ({"pose": [0.0] * 6, "cycle": (float("nan"), 0.1)}, "cycle is 2 finite numbers"),
    ({"pose": [0.0] * 6, "rng": 5}, "rng must be a numpy Generator"),
    ({"pose": [0.0] * 6, "image_size": 64.5}, "image_size must be in 16..1024, got 64.5"),
])
def test_render_refuses_what_is_no_pose_cycle_or_generator_in_one_line(arguments, rule):
    with pytest.raises(ConfigError) as refused:
        PhantomPatient(1, image_size=32).render(**arguments)
    assert rule in str(refused.value)


def test_a_pose_tensor_that_requires_grad_renders_as_its_values():
    patient, rng = PhantomPatient(1, image_size=32), np.random.default_rng
    pose = torch.tensor([1.0, 2, 3, 4, 5, 6], requires_grad=True)
    np.testing.assert_array_equal(patient.render(pose, rng=rng(0)), patient.render(pose.tolist(), rng=rng(0)))


def test_v3_poses_beyond_the_written_range_still_show_anatomy():
    patient = PhantomPatient(1, seed=0, version="v3")
    target = patient.render(np.zeros(6), 64, np.random.default_rng(0)).astype(float)
    for far in ([25, 25, 25, 25, 25, 25], [-25, -25, -25, -25, -25, -25]):
        image = patient.render(far, 64, np.random.default_rng(0)).astype(float)
        assert image.std() > 20  # structure, not a flat border value
        assert np.abs(image - target).mean() > 5


def test_the_old_phantom_stays_reachable_by_its_version(tmp_path):
    """``version="v3"`` writes the static phantom of before: random pairs, square-fan images, v3 patients."""
    folder = generate_phantom(tmp_path, num_patients=1, pairs_per_patient=3, image_size=32, version="v3")[0]
    description = json.loads((folder / PATIENT_FILE).read_text())
    assert (description["generator_version"], description["trajectory"]) == (3, "random")
    patient = PhantomPatient.from_folder(folder)
    assert patient.version == "v3"
    entry = _entries(folder)[0]
    written = _image(folder, entry["ft1_image_path"])[..., 0]
    assert np.array_equal(patient.render(entry["at1_6dof"], rng=patient.frame_rng(entry["frame_t1"])), written)


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
    entries = [_entries(f) for f in (first, second)]
    assert entries[0][0]["at1_6dof"] != entries[1][0]["at1_6dof"]
    path = entries[0][0]["ft1_image_path"]
    assert not np.array_equal(_image(first, path), _image(second, path))


def test_a_complete_phantom_is_reused_without_rewriting(tmp_path):
    folders = generate_phantom(tmp_path, num_patients=2, pairs_per_patient=3, image_size=32)
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    stamps = {p: p.stat().st_mtime_ns for p in files}
    assert generate_phantom(tmp_path, num_patients=2, pairs_per_patient=3, image_size=32) == folders
    assert {p: p.stat().st_mtime_ns for p in files} == stamps
    assert (tmp_path / MARKER_FILE).is_file() and all((folder / PATIENT_FILE).is_file() for folder in folders)


def test_other_parameters_replace_the_previous_phantom(tmp_path):
    generate_phantom(tmp_path, num_patients=3, pairs_per_patient=3, image_size=32)
    folders = generate_phantom(tmp_path, num_patients=2, pairs_per_patient=5, image_size=32)
    assert sorted(tmp_path.glob("phantom_*")) == folders  # phantom_03 is gone
    assert len(_entries(folders[0])) == 5
    walk = generate_phantom(tmp_path, num_patients=2, pairs_per_patient=5, image_size=32, trajectory="sonographer")
    assert json.loads((walk[0] / PATIENT_FILE).read_text())["trajectory"] == "sonographer"


def test_a_folder_of_other_things_is_refused_and_left_as_it_was(tmp_path):
    data = tmp_path / "realdata"
    for folder in ("patient_A", "phantom_CIRS_scan1"):  # a real scan of a physical phantom, by its name
        (data / folder / "ft1").mkdir(parents=True)
        (data / folder / "ft1" / "img_0001.png").write_bytes(b"precious")
    before = sorted(path for path in data.rglob("*"))
    with pytest.raises(OutputError, match=f"^{data}: not empty and not a phantom's folder .*patient_A"):
        generate_phantom(data, num_patients=1, pairs_per_patient=2, image_size=32)
    assert sorted(path for path in data.rglob("*")) == before


def test_a_patient_folder_named_as_the_output_is_refused_and_left_as_it_was(tmp_path):
    patient = generate_phantom(tmp_path, num_patients=2, pairs_per_patient=3, image_size=32)[0]
    before = {path: path.read_bytes() for path in patient.rglob("*") if path.is_file()}
    with pytest.raises(OutputError, match=f"^{patient}: a patient folder"):  # its phantom.json is no writer's marker
        generate_phantom(patient, num_patients=2, pairs_per_patient=2, image_size=32)
    assert {path: path.read_bytes() for path in patient.rglob("*") if path.is_file()} == before


def test_only_the_patient_folders_it_wrote_are_replaced(tmp_path):
    generate_phantom(tmp_path, num_patients=2, pairs_per_patient=3, image_size=32)
    notes = tmp_path / "phantom_notes"  # a user's folder beside the phantom, named like a patient
    notes.mkdir()
    (notes / "readme.txt").write_text("mine")
    marker = json.loads((tmp_path / MARKER_FILE).read_text())
    outside = tmp_path.parent / f"{tmp_path.name}_sibling"
    outside.mkdir()
    (tmp_path / MARKER_FILE).write_text(json.dumps({**marker, "folders": [f"../{outside.name}"]}))  # a crafted marker
    generate_phantom(tmp_path, num_patients=1, pairs_per_patient=4, image_size=32)
    assert (notes / "readme.txt").read_text() == "mine" and outside.is_dir()
    assert not (tmp_path / "phantom_02").exists()  # the earlier phantom's own folder is gone


@pytest.mark.parametrize("mark", ["a phantom.json of the user's", "an empty .phantom.lock"])
def test_a_users_folder_that_holds_a_file_named_like_the_writers_is_refused_and_left_as_it_was(tmp_path, mark):
    data = tmp_path / "userdata"
    (data / "patient_A" / "ft1").mkdir(parents=True)
    (data / "patient_A" / "ft1" / "img_0001.png").write_bytes(b"precious")
    (data / "notes.txt").write_text("mine")
    if mark.startswith("a phantom.json"):
        (data / MARKER_FILE).write_text('{"my": "own config"}')
    else:
        (data / ".phantom.lock").write_bytes(b"")
    before = {path: path.read_bytes() for path in data.rglob("*") if path.is_file()}
    with pytest.raises(OutputError, match=f"^{data}: not empty and not a phantom's folder .*notes.txt"):
        generate_phantom(data, num_patients=1, pairs_per_patient=2, image_size=32)
    assert {path: path.read_bytes() for path in data.rglob("*") if path.is_file()} == before


def test_a_phantom_json_that_is_not_the_writers_marker_is_refused(tmp_path):
    generate_phantom(tmp_path, num_patients=1, pairs_per_patient=2, image_size=32)
    (tmp_path / MARKER_FILE).write_text('{"my": "own config"}')
    with pytest.raises(OutputError, match=f"^{tmp_path / MARKER_FILE}: not the phantom writer's marker"):
        generate_phantom(tmp_path, num_patients=1, pairs_per_patient=3, image_size=32)
    assert (tmp_path / MARKER_FILE).read_text() == '{"my": "own config"}'


def test_a_pipe_named_like_the_marker_is_refused_at_once(tmp_path):
    os.mkfifo(tmp_path / MARKER_FILE)  # reading it would wait forever for a writer
    result = subprocess.run([sys.executable, "-m", "cardiac_dreamer.synthetic", str(tmp_path), "--patients", "1",
                             "--pairs", "2", "--image_size", "32"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    assert result.stderr.startswith(f"error: {tmp_path / MARKER_FILE}: ") and "not a regular file" in result.stderr
    assert sorted(path.name for path in tmp_path.iterdir()) == [MARKER_FILE]


def test_a_real_patient_named_like_a_phantom_patient_is_never_deleted(tmp_path, make_real_export):
    phantom = tmp_path / "phantom"
    generate_phantom(phantom, num_patients=2, pairs_per_patient=3, image_size=32)
    export = make_real_export(tmp_path / "export", patients=("data_0513_01",), pairs=2, size=32) / "data_0513_01"
    for name in ("phantom_realpatient", "phantom_07"):  # beside the phantom's patients, without their description
        shutil.copytree(export, phantom / name)
    kept = {path: path.read_bytes() for name in ("phantom_realpatient", "phantom_07")
            for path in (phantom / name).rglob("*") if path.is_file()}
    generate_phantom(phantom, num_patients=2, pairs_per_patient=4, image_size=32)
    assert {path: path.read_bytes() for path in kept} == kept
    shutil.rmtree(phantom / "phantom_02")
    shutil.copytree(export, phantom / "phantom_02")  # now in the way of a patient the phantom writes
    with pytest.raises(OutputError, match=f"^{phantom / 'phantom_02'}: holds what the phantom writer did not put "
                                          f"there .*without the writer's {PATIENT_FILE}"):
        generate_phantom(phantom, num_patients=2, pairs_per_patient=5, image_size=32)
    assert (phantom / "phantom_02" / "transitions_dataset.json").is_file()


def test_numpy_integers_write_a_phantom_that_reads_back_and_is_reused(tmp_path, caplog):
    arguments = dict(num_patients=np.int64(1), pairs_per_patient=np.int64(2), image_size=np.int64(32),
                     seed=np.int64(3))
    (folder,) = generate_phantom(tmp_path, **arguments)
    assert json.loads((folder / PATIENT_FILE).read_text())["image_size"] == 32  # not "32", which reads as no size
    assert PhantomPatient.from_folder(folder).image_size == 32
    caplog.set_level("INFO")
    generate_phantom(tmp_path, **arguments)
    assert any("reusing the phantom" in record.getMessage() for record in caplog.records)


@pytest.mark.parametrize("left", ["frames of a writer that wrote the description last", "a temporary file"])
def test_a_patient_folder_cut_short_is_replaced_by_the_same_command(tmp_path, left):
    generate_phantom(tmp_path, num_patients=2, pairs_per_patient=3, image_size=32)
    (tmp_path / MARKER_FILE).unlink()  # a phantom not yet marked complete
    patient = tmp_path / "phantom_02"
    (patient / PATIENT_FILE).unlink()
    (patient / "transitions_dataset.json").unlink()
    if left.startswith("a temporary"):  # killed inside the description's atomic write, before any frame
        shutil.rmtree(patient / "ft1")
        shutil.rmtree(patient / "ft2")
        (patient / f".{PATIENT_FILE}.x1y2.tmp").write_text("{")
    folders = generate_phantom(tmp_path, num_patients=2, pairs_per_patient=4, image_size=32)
    assert len(_entries(folders[1])) == 4 and (folders[1] / PATIENT_FILE).is_file()


def test_a_new_folder_holding_only_a_file_browsers_litter_is_written_into(tmp_path):
    (tmp_path / ".DS_Store").write_bytes(b"\0")  # a folder made in Finder
    assert len(generate_phantom(tmp_path, num_patients=1, pairs_per_patient=2, image_size=32)) == 1


def test_a_file_browsers_litter_does_not_stop_a_rewrite(tmp_path):
    first = generate_phantom(tmp_path, num_patients=2, pairs_per_patient=3, image_size=32)
    (first[0] / ".DS_Store").write_bytes(b"\0")  # Finder, after showing the folder
    assert len(_entries(generate_phantom(tmp_path, num_patients=2, pairs_per_patient=5, image_size=32)[0])) == 5


@pytest.mark.parametrize("written", [2, 3], ids=["a patient the new phantom needs", "an earlier patient it does not"])
def test_a_patient_folder_holding_the_users_files_is_refused_before_anything_is_deleted(tmp_path, written):
    # Left alone, an earlier patient 3 would sit beside two new patients of another image size and be trained with them
    first = generate_phantom(tmp_path, num_patients=written, pairs_per_patient=3, image_size=64)
    (first[-1] / "my_notes.txt").write_text("mine")
    before = sorted(tmp_path.rglob("*"))
    with pytest.raises(OutputError, match=f"^{first[-1]}: holds what the phantom writer did not put there "
                                          r"\(my_notes.txt\)"):
        generate_phantom(tmp_path, num_patients=2, pairs_per_patient=5, image_size=32)
    assert sorted(tmp_path.rglob("*")) == before  # the marker and the other patients are still there


def test_an_empty_output_path_is_refused_not_taken_for_the_current_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match="output directory is empty"):
        generate_phantom("", num_patients=1, pairs_per_patient=2, image_size=32)
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("output_dir", [None, 5, b"bytes", "with\0nul"])
def test_an_output_path_that_is_no_path_is_refused(output_dir):
    with pytest.raises(ConfigError, match="output directory must be a folder's path"):
        generate_phantom(output_dir, num_patients=1, pairs_per_patient=2, image_size=32)


@pytest.mark.parametrize("where", ["file", "below_a_file"])
def test_an_output_path_that_cannot_be_a_folder_is_one_line(tmp_path, where):
    blocker = tmp_path / "afile"
    blocker.write_text("hi")
    output = blocker if where == "file" else blocker / "sub"
    result = subprocess.run([sys.executable, "-m", "cardiac_dreamer.synthetic", str(output), "--patients", "1",
                             "--pairs", "2", "--image_size", "32"], capture_output=True, text=True)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.startswith(f"error: {output}")


def test_a_phantom_stopped_by_sigterm_says_so_in_one_line_and_the_same_command_completes_it(tmp_path):
    command = [sys.executable, "-m", "cardiac_dreamer.synthetic", str(tmp_path / "p"), "--patients", "2",
               "--pairs", "100", "--image-size", "64"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not list((tmp_path / "p").glob("phantom_01/ft1/*.png")) and time.monotonic() < deadline:
        time.sleep(0.05)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 143 and "Traceback" not in stderr
    assert stderr.splitlines()[-1] == "interrupted; the phantom is not complete: the same command writes it again"
    assert not (tmp_path / "p" / "phantom.json").exists()  # not marked complete, so it is not reused as it is
    finished = subprocess.run(command, capture_output=True, text=True)
    assert finished.returncode == 0, finished.stderr
    assert (tmp_path / "p" / "phantom.json").is_file()
    assert len(list((tmp_path / "p").glob("phantom_02/ft1/*.png"))) == 100


def test_the_table_of_a_phantom_too_small_to_hold_out_frames_says_so(tmp_path):
    result = subprocess.run([sys.executable, "-m", "cardiac_dreamer.synthetic", str(tmp_path / "p"), "--patients",
                             "2", "--pairs", "20", "--image_size", "32", "--table"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "n/a (needs more than 20 pairs per patient)" in result.stdout


def test_the_table_of_a_phantom_too_small_for_thirds_of_a_sweep_says_so_without_warnings(tmp_path):
    result = subprocess.run([sys.executable, "-m", "cardiac_dreamer.synthetic", str(tmp_path / "p"), "--patients",
                             "1", "--pairs", "2", "--image_size", "32", "--table"], capture_output=True, text=True)
    assert result.returncode == 0 and "Warning" not in result.stderr, result.stderr
    assert "| first third of the sweep (deg) | roll 37.0 +- 14.0, yaw -29.0 +- 14.0 | n/a (needs 3 or more pairs " \
           "per patient) |" in result.stdout and "nan" not in result.stdout


def test_two_processes_generating_into_one_directory_both_succeed_and_agree(tmp_path):
    """Two real processes at once: one writes, the other waits and reuses it; neither fails or writes twice."""
    script = (
        "import logging, sys\n"
        "from cardiac_dreamer.synthetic import generate_phantom\n"
        "logging.basicConfig(level=logging.INFO, format='%(message)s')\n"
        "folders = generate_phantom(sys.argv[1], num_patients=2, pairs_per_patient=6, image_size=32)\n"
        "print(' '.join(folder.name for folder in folders))\n"
    )
    processes = [subprocess.Popen([sys.executable, "-c", script, str(tmp_path)], stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outputs = [process.communicate(timeout=120) for process in processes]
    assert [process.returncode for process in processes] == [0, 0], [err for _, err in outputs]
    assert [out.split() for out, _ in outputs] == [["phantom_01", "phantom_02"]] * 2
    written = sum(line.startswith("wrote ") for _, err in outputs for line in err.splitlines())
    assert written == 2  # each patient written once, by one of the two processes
    assert [len(_entries(tmp_path / name)) for name in ("phantom_01", "phantom_02")] == [6, 6]


@pytest.mark.parametrize(
    "arguments, problem",
    [
        ({"image_size": 8}, "image_size"),
        ({"image_size": 100_000}, "image_size must be in 16..1024"),
        ({"trajectory": "spiral"}, "trajectory"),
        ({"version": "v5"}, "version"),
        ({"pairs_per_patient": 5, "frames_per_patient": 12}, "2 frames each"),
        ({"frames_per_patient": 3}, "--frames must be an even number >= 2, got 3"),
        ({"pairs_per_patient": 0}, "pair"),
        ({"num_patients": 10**9}, "number of patients must be a whole number in 1..10,000, got 1000000000"),
        ({"num_patients": True}, "number of patients must be a whole number"),
        ({"num_patients": "3"}, "number of patients must be a whole number"),
        ({"pairs_per_patient": 10**12}, "holds at most 1,000,000 frames, got 2,000,000,000,000"),
        ({"pairs_per_patient": 600_000}, "holds at most 1,000,000 frames, got 1,200,000"),
        ({"frames_per_patient": 2.5}, "frames per patient must be a whole number"),
        ({"image_size": 64.5}, "image_size must be in 16..1024, got 64.5"),
        ({"pairs_per_patient": 2.0}, "pairs per patient must be a whole number >= 1, got 2.0"),
        ({"seed": -1}, "seed must be a whole number in 0.."),
        ({"frames_per_patient": 3, "trajectory": "sonographer"}, "a sonographer walk needs >= 4 frames, got 3"),
    ],
)
def test_invalid_arguments_raise_config_error(tmp_path, arguments, problem):
    with pytest.raises(ConfigError, match=problem):
        generate_phantom(tmp_path, **arguments)
    assert not list(tmp_path.iterdir())  # refused before writing anything
