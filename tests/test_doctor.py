"""``cardiac-train --check_data``: the pre-training checklist as a command, which reads and writes nothing else."""
import json
import logging

import numpy as np
import pytest
from PIL import Image

from cardiac_dreamer.cli import train_command as train_cli
from cardiac_dreamer.config import Config, apply_overrides
from cardiac_dreamer.data import TRANSITIONS_FILE, read_patient_records
from cardiac_dreamer.cross_validation import plan_cross_validation
from cardiac_dreamer.doctor import check_data
from cardiac_dreamer.errors import DataError
from test_bad_input import snapshot

PATIENTS = ("data_0513_01", "data_0513_02", "data_0513_03")  # the real_export fixture: 4 pairs each, 64 px RGB


def data_config(data_dir, **overrides):
    return apply_overrides(Config(), {"data.data_dir": str(data_dir), "data.image_size": 64, **overrides}).data


def break_entry(data_dir, folder, index, key, value):
    path = data_dir / folder / TRANSITIONS_FILE
    entries = json.loads(path.read_text())
    entries[index][key] = value
    path.write_text(json.dumps(entries))
    return path


def test_a_valid_directory_is_summarised_and_left_untouched(real_export):
    before = snapshot(real_export)
    summary = check_data(data_config(real_export)).summary()
    assert snapshot(real_export) == before
    assert "every check passed" in summary
    assert "patients: 3 in 3 folders; pairs: 12" in summary
    for patient in PATIENTS:
        assert f"  {patient}: 4 pairs" in summary
    assert "images: 24 files, sizes 64x64 (24), modes RGB (24); resized to 64x64" in summary
    assert "composition: labels are additive (max residual 0.0000 mm / 0.0000 deg" in summary
    assert "split (automatic, seed 42):" in summary
    assert "train 1 patient, 4 pairs" in summary and "val   1 patient," in summary


def test_label_ranges_are_the_extremes_of_the_labels_in_mm_and_degrees(real_export):
    report = check_data(data_config(real_export))
    records = [r for p in PATIENTS for r in read_patient_records(real_export, p)]
    x_mm = [r.at1[0] for r in records]
    yaw_deg = [r.action_change[5] for r in records]
    assert report.label_ranges["at1"][0] == (min(x_mm), max(x_mm))
    assert report.label_ranges["action_change"][5] == (min(yaw_deg), max(yaw_deg))
    assert "x_mm " in report.summary() and "yaw_deg " in report.summary()


def test_every_problem_is_collected_and_the_error_names_the_first_and_the_count(real_export, caplog):
    first = break_entry(real_export, "data_0513_01", 2, "at1_6dof", [0.0] * 5)
    second = break_entry(real_export, "data_0513_03", 0, "ft1_image_path", "/etc/hosts")
    image = real_export / "data_0513_02" / "ft2" / "frames_0513_02_0001.png"
    image.write_bytes(b"not an image")
    with caplog.at_level(logging.ERROR), pytest.raises(DataError) as error:
        check_data(data_config(real_export))
    message = str(error.value)
    assert message.startswith(f"{first}: entry 2: at1_6dof must be a list of 6 numbers")
    assert f"(and 2 more problems in {real_export}, each logged above)" in message and "\n" not in message
    logged = [record.getMessage() for record in caplog.records if record.levelno == logging.ERROR]
    assert len(logged) == 3
    assert any(str(second) in line and "is absolute" in line for line in logged)
    assert any(str(image) in line and "cannot decode image" in line for line in logged)


def test_every_bad_entry_of_one_file_is_listed_and_the_good_entries_images_still_checked(real_export, caplog):
    """Three broken entries of one transitions file and a broken image of a good entry: four problems, not one."""
    break_entry(real_export, "data_0513_01", 0, "at1_6dof", [0.0] * 3)
    break_entry(real_export, "data_0513_01", 1, "ft1_image_path", "ft1/missing.png")
    path = break_entry(real_export, "data_0513_01", 3, "at2_6dof", "north")
    written = json.loads(path.read_text())[2]["ft2_image_path"].replace("\\", "/")  # the export writes Windows paths
    good_image = real_export / "data_0513_01" / written
    good_image.write_bytes(b"not an image")
    with caplog.at_level(logging.ERROR), pytest.raises(DataError, match=r"\(and 3 more problems"):
        check_data(data_config(real_export))
    logged = [record.getMessage() for record in caplog.records if record.levelno == logging.ERROR]
    assert [any(f"entry {index}:" in line for line in logged) for index in (0, 1, 3)] == [True] * 3
    assert any(str(good_image) in line and "cannot decode image" in line for line in logged)


def test_training_still_stops_at_the_first_bad_entry(real_export):
    break_entry(real_export, "data_0513_01", 0, "at1_6dof", [0.0] * 3)
    break_entry(real_export, "data_0513_01", 1, "at2_6dof", "north")
    with pytest.raises(DataError, match="entry 0: at1_6dof"):
        read_patient_records(real_export, "data_0513_01")


def test_a_single_problem_is_reported_in_the_words_training_uses(real_export):
    path = break_entry(real_export, "data_0513_02", 1, "ft2_image_path", "ft2\\gone.png")
    with pytest.raises(DataError) as doctor_error:
        check_data(data_config(real_export))
    with pytest.raises(DataError) as training_error:
        read_patient_records(real_export, "data_0513_02")
    assert str(doctor_error.value) == str(training_error.value)
    assert str(path) in str(doctor_error.value)


def test_split_problems_are_found_as_training_would_find_them(real_export):
    cfg = data_config(real_export, **{"data.manual_splits": True, "data.train_patients": ["data_0513_01"],
                                      "data.val_patients": ["data_0513_01"]})
    with pytest.raises(DataError, match="patient 'data_0513_01' is listed in both train and val"):
        check_data(cfg)


def test_poses_that_never_change_on_an_axis_are_flagged(real_export):
    assert "never change" not in check_data(data_config(real_export)).summary()
    for folder in ("data_0513_01", "data_0513_02", "data_0513_03"):  # an exporter that writes no roll
        path = real_export / folder / TRANSITIONS_FILE
        entries = json.loads(path.read_text())
        for entry in entries:
            entry["at1_6dof"][3] = entry["at2_6dof"][3] = entry["action_change_6dof"][3] = 0.0
        path.write_text(json.dumps(entries))
    assert "warning: the poses never change on roll (always 0 deg): a model learns nothing there" in \
        check_data(data_config(real_export)).summary()


def test_a_composition_the_labels_do_not_follow_is_flagged(real_export):
    assert "warning: model.composition is se3" in check_data(data_config(real_export), composition="se3").summary()
    assert "warning" not in check_data(data_config(real_export), composition="additive").summary()


def test_images_of_several_sizes_and_modes_are_counted_and_stretching_is_noted(real_export):
    image = real_export / "data_0513_01" / "ft1" / "frames_0513_01_0000.png"
    Image.new("L", (80, 60), 100).save(image)
    summary = check_data(data_config(real_export)).summary()
    assert "sizes 64x64 (23), 80x60 (1), modes RGB (23), L (1)" in summary
    assert "non-square images are stretched" in summary


def test_16_bit_images_holding_12_bit_values_are_warned_of_as_nearly_black(real_export):
    folder = real_export / "data_0513_01" / "ft1"
    twelve, full = sorted(folder.glob("*.png"))[:2]
    Image.fromarray(np.full((64, 64), 40000, dtype=np.uint16)).save(full)  # the full 16-bit range: fine
    assert "hold no value above" not in check_data(data_config(real_export)).summary()
    Image.fromarray(np.full((64, 64), 4000, dtype=np.uint16)).save(twelve)  # 12-bit data: gray 16 of 255
    summary = check_data(data_config(real_export)).summary()
    assert "warning: 1 16-bit images hold no value above 4095" in summary and f"the first: {twelve})" in summary


def test_the_check_data_flag_prints_the_summary_and_creates_no_run(real_export, tmp_path, capsys):
    output = tmp_path / "outputs"
    code = train_cli.main(["--check_data", "--data_dir", str(real_export), "--image_size", "64",
                           "--output_dir", str(output)])
    assert code == 0
    assert "patients: 3 in 3 folders" in capsys.readouterr().out
    assert not output.exists()


def test_the_check_data_flag_on_a_broken_directory_is_one_error_line(real_export, capsys):
    path = break_entry(real_export, "data_0513_03", 3, "at2_6dof", "not a vector")
    assert train_cli.main(["--check_data", "--data_dir", str(real_export), "--image_size", "64"]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {path}: entry 3: at2_6dof must be a list of 6")


def test_a_single_problem_is_the_error_line_alone_and_is_not_logged_as_well(real_export, caplog):
    break_entry(real_export, "data_0513_02", 0, "at1_6dof", [0.0] * 5)
    with caplog.at_level(logging.ERROR), pytest.raises(DataError):
        check_data(data_config(real_export))
    assert not [record for record in caplog.records if record.levelno >= logging.ERROR]


def test_a_subset_is_described_as_spread_over_each_folder(real_export):
    summary = check_data(data_config(real_export, **{"data.max_pairs_per_patient": 2})).summary()
    assert "training will use 2 pairs of each folder, spread evenly over it" in summary


def test_a_patient_folder_linked_in_twice_is_reported_beside_the_other_problems(real_export, caplog):
    # the leak check ran only on clean records, so it surfaced on the next pass, after the other fix
    (real_export / "data_0513_04").symlink_to(real_export / "data_0513_01", target_is_directory=True)
    image = real_export / "data_0513_02" / "ft2" / "frames_0513_02_0001.png"
    image.write_bytes(b"not an image")
    with caplog.at_level(logging.ERROR), pytest.raises(DataError, match=r"and 1 more problem in"):
        check_data(data_config(real_export))
    logged = " ".join(record.getMessage() for record in caplog.records if record.levelno == logging.ERROR)
    assert "cannot decode image" in logged and "data_0513_04" in logged


def test_an_image_training_leaves_out_of_its_subset_is_not_a_problem_as_in_training(real_export):
    # 2 pairs of 4 kept per folder: the first and the last entry (data.max_pairs_per_patient)
    image = real_export / "data_0513_02" / "ft1" / "frames_0513_02_0001.png"  # entry 1's t1 image only
    image.write_bytes(b"not an image")
    check_data(data_config(real_export, **{"data.max_pairs_per_patient": 2}))
    with pytest.raises(DataError, match="cannot decode image"):
        check_data(data_config(real_export))


def test_cv_folds_that_train_on_several_patients_are_listed_without_a_warning(tmp_path, make_real_export):
    folders = tuple(f"data_p{number}" for number in range(1, 7))
    data_dir = make_real_export(tmp_path / "data", patients=folders, pairs=2, size=64)
    summary = check_data(data_config(data_dir, **{"data.cv_folds": 2})).summary()
    assert summary.count("trains on 2 patients") == 2 and "warning" not in summary


def test_with_cv_folds_the_folds_are_checked_and_listed_as_cv_will_train_them(tmp_path, make_real_export, capsys):
    folders = ("data_p1", "data_p2", "data_p3", "data_p4", "data_p5")
    data_dir = make_real_export(tmp_path / "data", patients=folders, pairs=2, size=64)
    cfg = data_config(data_dir, **{"data.cv_folds": 2, "data.test_patients": ["data_p5"]})
    plan = plan_cross_validation(apply_overrides(Config(), {"data.data_dir": str(data_dir), "data.image_size": 64,
                                                            "data.cv_folds": 2, "data.test_patients": ["data_p5"]}))
    summary = check_data(cfg).summary()
    assert "cross-validation (2 folds, seed 42):" in summary and "held out of every fold: data_p5" in summary
    for index, (fold, inner) in enumerate(zip(plan.folds, plan.inner_val), start=1):
        reported = f"fold {index}: reports {', '.join(fold.val)} (4 pairs); selects on {inner[0]}; trains on 1 patient"
        assert reported in summary
    assert "warning: folds 1, 2 train on one patient" in summary  # each learns one person's anatomy
    assert train_cli.main(["--check_data", "--data_dir", str(data_dir), "--image_size", "64", "--cv", "2",
                           "--test_patients", "data_p5"]) == 0
    assert "cross-validation (2 folds, seed 42):" in capsys.readouterr().out
    two_left = {"data.cv_folds": 2, "data.test_patients": ["data_p3", "data_p4", "data_p5"]}
    with pytest.raises(DataError, match="a fold has 1 training patient"):  # what --cv 2 would refuse there
        check_data(data_config(data_dir, **two_left))


def test_a_transitions_file_that_is_a_directory_is_reported_not_skipped(real_export, capsys):
    path = real_export / "data_0513_03" / TRANSITIONS_FILE
    path.unlink()
    path.mkdir()
    assert train_cli.main(["--check_data", "--data_dir", str(real_export), "--image_size", "64"]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines == [f"error: {path}: transitions file is a directory, not a regular file"]
