"""Reading transitions_dataset.json: real exports load as they are, every bad input is one precise DataError."""
import json
import math
import os
import shutil
from pathlib import Path

import pytest

from cardiac_dreamer.data import TRANSITIONS_FILE, find_patient_folders, read_patient_records, read_records
from cardiac_dreamer.data.records import evenly_spaced
from cardiac_dreamer.errors import DataError

PATIENT = "data_0513_01"


def entries_of(data_dir: Path, folder: str = PATIENT) -> list:
    return json.loads((data_dir / folder / TRANSITIONS_FILE).read_text())


def rewrite(data_dir: Path, entries, folder: str = PATIENT) -> Path:
    path = data_dir / folder / TRANSITIONS_FILE
    path.write_text(entries if isinstance(entries, str) else json.dumps(entries))
    return path


def assert_one_line_naming(error: pytest.ExceptionInfo, *parts: str) -> None:
    message = str(error.value)
    assert "\n" not in message
    for part in parts:
        assert part in message, f"{part!r} not in {message!r}"


def test_real_export_loads_with_labels_and_resolved_paths(real_export):
    records = read_records(real_export)
    assert len(records) == 12
    first = records[0]
    entry = entries_of(real_export)[0]
    assert (first.patient_id, first.folder, first.index) == (PATIENT, PATIENT, 0)
    assert first.image_t1_rel == "ft1\\frames_0513_01_0000.png"
    assert first.image_t1 == (real_export / PATIENT / "ft1" / "frames_0513_01_0000.png").resolve()
    assert first.image_t2.is_absolute() and first.image_t2.is_file()
    assert first.at1 == tuple(entry["at1_6dof"]) and first.at2 == tuple(entry["at2_6dof"])
    assert first.action_change == tuple(entry["action_change_6dof"])
    assert all(isinstance(v, float) for v in first.at1 + first.action_change + first.at2)
    assert first.source == real_export / PATIENT / TRANSITIONS_FILE


def test_records_keep_folder_then_entry_order(real_export):
    records = read_records(real_export)
    assert [(r.folder, r.index) for r in records] == sorted((r.folder, r.index) for r in records)


def test_find_patient_folders_lists_only_folders_with_a_transitions_file(real_export, caplog):
    (real_export / "notes").mkdir()
    (real_export / ".ipynb_checkpoints").mkdir()
    (real_export / "README.txt").write_text("not a patient")
    (real_export / "data_0513_03" / TRANSITIONS_FILE).rename(real_export / "data_0513_03" / "transitions.JSON")
    assert find_patient_folders(real_export) == ["data_0513_01", "data_0513_02"]
    warnings = [record.getMessage() for record in caplog.records if record.levelname == "WARNING"]
    assert len(warnings) == 1 and "2 sub-folder(s)" in warnings[0]  # a patient never drops out silently
    assert "'data_0513_03'" in warnings[0] and "'notes'" in warnings[0] and "ipynb" not in warnings[0]


@pytest.mark.parametrize("name", ["data\n0513", "data\t0513", "data\x1b[31m"])
def test_a_patient_folder_named_with_a_control_character_is_refused(real_export, name):
    (real_export / "data_0513_03").rename(real_export / name)
    with pytest.raises(DataError) as error:
        find_patient_folders(real_export)
    assert_one_line_naming(error, "contains a control character", repr(os.fsencode(real_export / name)))


def test_missing_data_dir_is_a_data_error(tmp_path):
    with pytest.raises(DataError, match="not found") as error:
        find_patient_folders(tmp_path / "nowhere")
    assert_one_line_naming(error, str(tmp_path / "nowhere"))


def test_data_dir_without_patient_folder_is_a_data_error(tmp_path):
    (tmp_path / "empty_patient").mkdir()
    with pytest.raises(DataError, match="no patient folder") as error:
        find_patient_folders(tmp_path)
    assert_one_line_naming(error, str(tmp_path))


def test_a_patient_folder_given_as_the_data_directory_points_to_its_parent(tmp_path, make_real_export):
    data_dir = make_real_export(tmp_path / "data", pairs=2, size=32)
    patient = data_dir / find_patient_folders(data_dir)[0]
    with pytest.raises(DataError, match=f"so it is one patient: pass the folder above it, {data_dir}$"):
        find_patient_folders(patient)


def test_max_pairs_per_patient_spreads_the_entries_kept_over_the_whole_folder(tmp_path, make_real_export):
    data_dir = make_real_export(tmp_path / "data", pairs=10, size=32)
    records = read_records(data_dir, max_pairs_per_patient=4)
    expected = [(folder, index) for folder in find_patient_folders(data_dir) for index in (0, 3, 6, 9)]
    assert [(r.folder, r.index) for r in records] == expected


@pytest.mark.parametrize("count, expected", [(1, [0]), (2, [0, 9]), (3, [0, 4, 9]), (9, [0, 1, 2, 3, 4, 6, 7, 8, 9]),
                                             (10, list(range(10))), (11, list(range(10))), (None, list(range(10)))])
def test_evenly_spaced_keeps_distinct_positions_from_first_to_last(count, expected):
    assert evenly_spaced(list(range(10)), count) == expected


def test_grouping_gives_several_folders_one_patient_id(real_export):
    grouping = {"data_0513_01": "anna", "data_0513_02": "anna"}
    records = read_records(real_export, grouping=grouping)
    assert {r.folder: r.patient_id for r in records} == {
        "data_0513_01": "anna", "data_0513_02": "anna", "data_0513_03": "data_0513_03"
    }


@pytest.mark.parametrize(
    "text, problem",
    [
        ("[{", "invalid JSON at line 1"),
        ('{"ft1_image_path": "x"}', "expected a JSON list"),
        ("[]", "empty"),
    ],
    ids=["unparsable", "not-a-list", "empty"],
)
def test_unusable_transitions_file_is_a_data_error_naming_it(real_export, text, problem):
    path = rewrite(real_export, text)
    with pytest.raises(DataError) as error:
        read_patient_records(real_export, PATIENT)
    assert_one_line_naming(error, str(path), problem)


def test_missing_transitions_file_is_a_data_error_naming_it(real_export):
    (real_export / PATIENT / TRANSITIONS_FILE).unlink()
    with pytest.raises(DataError) as error:
        read_patient_records(real_export, PATIENT)
    assert_one_line_naming(error, str(real_export / PATIENT / TRANSITIONS_FILE), "not found")


def _set(key, value):
    def corrupt(entry):
        entry[key] = value
        return entry

    return corrupt


def _drop(key):
    def corrupt(entry):
        del entry[key]
        return entry

    return corrupt


def _set_axis(key, axis, value):
    def corrupt(entry):
        entry[key][axis] = value
        return entry

    return corrupt


BAD_ENTRIES = {
    "not-an-object": (lambda entry: [entry["ft1_image_path"]], "expected an object, got list"),
    "missing-key": (_drop("at2_6dof"), "missing key(s) at2_6dof"),
    "short-vector": (_set("at1_6dof", [0.0] * 5), "at1_6dof must be a list of 6 numbers"),
    "long-vector": (_set("action_change_6dof", [0.0] * 7), "action_change_6dof must be a list of 6"),
    "vector-not-list": (_set("at2_6dof", 3.0), "at2_6dof must be a list of 6"),
    "nan": (_set_axis("at1_6dof", 4, math.nan), "at1_6dof[4] must be a finite number"),
    "integer-beyond-any-float": (_set_axis("at1_6dof", 0, 10**400), "at1_6dof[0] must be a finite number"),
    "beyond-a-kilometre": (_set_axis("at2_6dof", 1, -2e6), "at2_6dof[1] must be a finite number within +-1e+06"),
    "infinity": (_set_axis("at2_6dof", 0, math.inf), "at2_6dof[0] must be a finite number"),
    "string-number": (_set_axis("at1_6dof", 1, "1.5"), "at1_6dof[1] must be a finite number"),
    "bool": (_set_axis("action_change_6dof", 2, True), "action_change_6dof[2] must be a finite number"),
    "path-not-string": (_set("ft1_image_path", 7), "ft1_image_path must be a non-empty string"),
    "absolute-posix": (_set("ft1_image_path", "/etc/hosts"), "is absolute"),
    "absolute-windows-drive": (_set("ft2_image_path", "C:\\export\\ft2\\a.png"), "is absolute"),
    "windows-unc": (_set("ft2_image_path", "\\\\server\\share\\a.png"), "is absolute"),
    "dot-dot": (_set("ft1_image_path", "..\\data_0513_02\\ft1\\frames_0513_02_0000.png"), "escapes the patient"),
    "dot-dot-inside": (_set("ft1_image_path", "ft1\\..\\..\\x.png"), "escapes the patient"),
    "image-missing": (_set("ft2_image_path", "ft2\\frames_0513_01_9999.png"), "image not found"),
    "image-is-a-folder": (_set("ft2_image_path", "ft2"), "is not a regular file"),
    "nul-in-path": (_set("ft1_image_path", "ft1\\a\0.png"), "contains a NUL character"),
    "name-too-long": (_set("ft1_image_path", "ft1\\" + "n" * 300), "cannot be resolved (File name too long)"),
}


@pytest.mark.parametrize("corrupt, problem", BAD_ENTRIES.values(), ids=BAD_ENTRIES.keys())
def test_bad_entry_is_a_data_error_naming_file_and_entry(real_export, corrupt, problem):
    entries = entries_of(real_export)
    entries[2] = corrupt(entries[2])
    path = rewrite(real_export, entries)
    with pytest.raises(DataError) as error:
        read_patient_records(real_export, PATIENT)
    assert_one_line_naming(error, f"{path}: entry 2:", problem)


def test_every_entry_is_checked_not_only_the_first(real_export):
    entries = entries_of(real_export)
    entries[-1]["ft1_image_path"] = "ft1\\gone.png"
    path = rewrite(real_export, entries)
    with pytest.raises(DataError) as error:
        read_records(real_export, max_pairs_per_patient=1)
    assert_one_line_naming(error, f"{path}: entry {len(entries) - 1}:", "image not found")


def test_duplicate_entry_is_a_data_error_naming_both_entries(real_export):
    entries = entries_of(real_export)
    entries[3] = dict(entries[1], frame_t1=99)
    path = rewrite(real_export, entries)
    with pytest.raises(DataError) as error:
        read_patient_records(real_export, PATIENT)
    assert_one_line_naming(error, f"{path}: entry 3:", "duplicate of entry 1")


def test_symlink_resolving_outside_the_data_dir_is_a_data_error(real_export, tmp_path):
    outside = tmp_path / "outside.png"
    outside.write_bytes((real_export / PATIENT / "ft1" / "frames_0513_01_0000.png").read_bytes())
    (real_export / PATIENT / "ft1" / "link.png").symlink_to(outside)
    entries = entries_of(real_export)
    entries[1]["ft1_image_path"] = "ft1\\link.png"
    path = rewrite(real_export, entries)
    with pytest.raises(DataError) as error:
        read_patient_records(real_export, PATIENT)
    assert_one_line_naming(error, f"{path}: entry 1:", "outside the data directory")


def test_symlink_inside_the_data_dir_is_accepted(real_export):
    target = real_export / "data_0513_02" / "ft1" / "frames_0513_02_0000.png"
    (real_export / PATIENT / "ft1" / "shared.png").symlink_to(target)
    entries = entries_of(real_export)
    entries[1]["ft1_image_path"] = "ft1\\shared.png"
    rewrite(real_export, entries)
    assert read_patient_records(real_export, PATIENT)[1].image_t1 == target.resolve()


def test_a_transitions_file_that_is_a_directory_keeps_its_folder_a_patient_and_is_refused(real_export):
    path = real_export / PATIENT / TRANSITIONS_FILE
    path.unlink()
    path.mkdir()
    assert PATIENT in find_patient_folders(real_export)
    with pytest.raises(DataError) as error:
        read_records(real_export)
    assert_one_line_naming(error, str(path), "is a directory, not a regular file")


def test_pathologically_nested_json_is_a_data_error_not_a_recursion_error(real_export):
    path = rewrite(real_export, "[" * 100_000)
    with pytest.raises(DataError) as error:
        read_patient_records(real_export, PATIENT)
    assert_one_line_naming(error, str(path), "nested too deeply")


def test_a_symlink_loop_for_an_image_is_a_data_error(real_export):
    (real_export / PATIENT / "ft1" / "loop.png").symlink_to("loop.png")
    entries = entries_of(real_export)
    entries[2]["ft1_image_path"] = "ft1\\loop.png"
    path = rewrite(real_export, entries)
    with pytest.raises(DataError) as error:
        read_patient_records(real_export, PATIENT)
    assert_one_line_naming(error, f"{path}: entry 2: ft1_image_path", "cannot be resolved")


def test_an_entry_naming_a_key_twice_is_refused_naming_the_key(real_export):
    path = real_export / PATIENT / TRANSITIONS_FILE
    text = path.read_text()
    path.write_text(text.replace('"at1_6dof":', '"at1_6dof": [0, 0, 0, 0, 0, 0], "at1_6dof":', 1))
    with pytest.raises(DataError) as error:
        read_patient_records(real_export, PATIENT)
    assert_one_line_naming(error, str(path), "'at1_6dof' appears twice")


def test_an_image_reachable_from_two_patients_is_refused_naming_both(real_export):
    (real_export / "data_0513_00").symlink_to(PATIENT)  # the same folder under a second name
    with pytest.raises(DataError) as error:
        read_records(real_export)
    assert_one_line_naming(error, f"{real_export / PATIENT / TRANSITIONS_FILE}: entry 0",
                           f"{real_export / 'data_0513_00' / TRANSITIONS_FILE}: entry 0", "leak between the splits")
def test_a_patient_folder_of_hard_links_is_refused_as_the_same_images(real_export):
    copy = real_export / "data_0513_00"
    shutil.copytree(real_export / PATIENT, copy, copy_function=os.link)  # cp -al: the same files, not copies
    with pytest.raises(DataError) as error:
        read_records(real_export)
    assert_one_line_naming(error, f"{copy / TRANSITIONS_FILE}: entry 0", "hard link", "leak between the splits",
                           "--grouping_file")


def test_a_patient_folder_copied_under_another_name_is_refused(real_export):
    copy = real_export / "data_0513_00"
    shutil.copytree(real_export / PATIENT, copy)
    with pytest.raises(DataError) as error:
        read_records(real_export)
    assert_one_line_naming(error, f"{copy / TRANSITIONS_FILE}: entry 0", f"{real_export / PATIENT}",
                           "byte for byte", "leak between the splits")


def test_two_patients_may_share_labels_when_their_images_differ(real_export):
    copy = real_export / "data_0513_00"
    shutil.copytree(real_export / PATIENT, copy)
    for image in (copy / "ft1").iterdir():
        image.write_bytes(image.read_bytes() + b"\0")  # trailing bytes: the same size no more, another file
    assert {PATIENT, "data_0513_00"} <= {record.patient_id for record in read_records(real_export)}


@pytest.mark.parametrize("number", [-1000, "12", 3.5])
def test_a_frame_number_that_is_no_whole_number_is_read_as_none_and_named_in_one_warning(real_export, caplog,
                                                                                         number):
    entries = entries_of(real_export)
    for entry in entries:
        entry["frame_t1"], entry["frame_t2"] = number, 0
    path = rewrite(real_export, entries)
    records = read_patient_records(real_export, PATIENT)
    read_patient_records(real_export, PATIENT)  # read again, as a run does: warned of once
    assert all(record.frame_t1 is None for record in records)  # optional: it never stops a training
    warnings = [record.getMessage() for record in caplog.records if "frame_t1" in record.getMessage()]
    assert len(warnings) == 1 and f"{path}: entry 0: frame_t1 {number!r} is not a whole number" in warnings[0]
