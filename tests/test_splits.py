"""Splits are by patient: automatic, manual, k-fold, and grouping of several folders into one person."""
import json
import logging
import re

import pytest

from cardiac_dreamer.config import DataConfig
from cardiac_dreamer.data import (
    PatientSplit,
    automatic_split,
    kfold_splits,
    manual_split,
    prepare_data,
    read_grouping,
)
from cardiac_dreamer.errors import DataError

PATIENTS = [f"p{i:02d}" for i in range(10)]


def test_automatic_split_is_deterministic_whatever_the_input_order():
    assert automatic_split(PATIENTS, seed=3) == automatic_split(list(reversed(PATIENTS)), seed=3)


def test_automatic_split_depends_on_the_seed():
    assert len({tuple(automatic_split(PATIENTS, seed=seed).val) for seed in range(5)}) > 1


@pytest.mark.parametrize(
    "count, expected",
    [(2, (1, 1, 0)), (3, (1, 1, 1)), (4, (2, 1, 1)), (5, (3, 1, 1)), (10, (7, 2, 1)), (20, (14, 3, 3))],
)
def test_automatic_split_sizes_follow_the_ratios_with_train_and_val_never_empty(count, expected):
    split = automatic_split([f"p{i}" for i in range(count)])
    assert (len(split.train), len(split.val), len(split.test)) == expected


def test_automatic_split_uses_every_patient_exactly_once():
    split = automatic_split(PATIENTS)
    assert sorted(split.patients()) == PATIENTS


def test_automatic_split_without_test_ratio_leaves_test_empty():
    split = automatic_split(PATIENTS, train_ratio=0.8, val_ratio=0.2, test_ratio=0.0)
    assert (len(split.train), len(split.val), split.test) == (8, 2, [])


def test_automatic_split_of_one_patient_is_a_data_error():
    with pytest.raises(DataError, match="at least 2 patients"):
        automatic_split(["only"])


def test_patient_split_round_trips_through_a_dict():
    split = automatic_split(PATIENTS)
    assert PatientSplit.from_dict(json.loads(json.dumps(split.to_dict()))) == split


def test_split_by_patient_names_the_split_holding_each_patient():
    split = PatientSplit(train=["a"], val=["b"], test=["c"])
    assert split.split_by_patient() == {"a": "train", "b": "val", "c": "test"}


def test_patient_split_rejects_a_patient_in_two_splits():
    with pytest.raises(DataError, match="'a' is listed in both train and val"):
        PatientSplit(train=["a"], val=["a"])


def test_manual_split_accepts_patient_ids_and_folder_names():
    grouping = {"scan_1": "anna", "scan_2": "anna", "scan_3": "ben", "scan_4": "carl"}
    split = manual_split(["anna", "ben", "carl"], train=["scan_1"], val=["ben"], test=["scan_4"], grouping=grouping)
    assert split == PatientSplit(train=["anna"], val=["ben"], test=["carl"])


@pytest.mark.parametrize(
    "train, val, test, problem",
    [
        (["a"], ["a"], [], "'a' is listed in both train and val"),
        (["a", "zed"], ["b"], [], "train patient 'zed' does not exist"),
        (["a"], ["b"], ["c", "c"], "'c' is listed twice in test"),
        ([], ["b"], [], "the train list is empty"),
        (["a"], [], ["c"], "the val list is empty"),
    ],
    ids=["in-two-splits", "unknown", "listed-twice", "empty-train", "empty-val"],
)
def test_manual_split_errors_name_the_patient(train, val, test, problem):
    with pytest.raises(DataError, match=problem):
        manual_split(["a", "b", "c"], train, val, test)


def test_a_mistyped_patient_gets_the_closest_name_and_the_patients():
    with pytest.raises(DataError, match=r"'data_0513_2' does not exist in the data directory \(did you mean "
                                        r"'data_0513_02'\? its patients: data_0513_01, data_0513_02\)"):
        manual_split(["data_0513_01", "data_0513_02"], train=["data_0513_2"], val=["data_0513_01"])


def test_a_name_cut_at_its_comma_is_told_to_be_quoted():
    with pytest.raises(DataError, match=re.escape(
            "train patient 'scan' does not exist in the data directory ('scan,1' is one name: in a flag's "
            "comma-separated names write it in double quotes, which a shell keeps inside single quotes: '\"scan,1\"'; "
            'in --set or a YAML file, as an item of a list: ["scan,1"])')):
        manual_split(["scan,1", "ben"], train=["scan", "1"], val=["ben"])


CAFE_TYPED, CAFE_ON_DISK = "caf\u00e9", "cafe\u0301"  # NFC (typed on Linux) and NFD (a folder written by macOS)


def encoding_hint(typed: str, on_disk: str, where: str = "the data directory") -> str:
    return re.escape(f"({typed!r} is {ascii(typed)} here and {ascii(on_disk)} in {where}: the same letters with the "
                     "accents encoded another way, Unicode NFC against NFD; copy the name from there)")


def test_a_name_whose_accents_are_encoded_otherwise_is_shown_code_point_by_code_point():
    # The two print alike: without the code points the message reads "'café' does not exist ... its patients: café".
    hint = encoding_hint(CAFE_TYPED, CAFE_ON_DISK)
    with pytest.raises(DataError, match=re.escape(f"train patient {CAFE_TYPED!r} does not exist in the data "
                                                  "directory ") + hint) as error:
        manual_split([CAFE_ON_DISK, "ben"], train=[CAFE_TYPED], val=["ben"])
    assert "'caf\\xe9' here and 'cafe\\u0301' in the data directory" in str(error.value)
    with pytest.raises(DataError, match=re.escape(f"test patient(s) {CAFE_TYPED!r} do not exist ") + hint):
        kfold_splits([CAFE_ON_DISK, "ben", "carl"], k=2, test=[CAFE_TYPED])
    with pytest.raises(DataError, match=re.escape(f"patient(s) {CAFE_TYPED!r} not in the val split (its patients: "
                                                  f"{CAFE_ON_DISK}) ") + encoding_hint(CAFE_TYPED, CAFE_ON_DISK,
                                                                                       "the val split")):
        PatientSplit(train=["ben"], val=[CAFE_ON_DISK]).select("val", [CAFE_TYPED])
    grouping = {f"scan_{CAFE_ON_DISK}": "anna"}  # a folder name, as a manual split and --patients take them
    with pytest.raises(DataError, match=encoding_hint(f"scan_{CAFE_TYPED}", f"scan_{CAFE_ON_DISK}", "the val split")):
        PatientSplit(train=["ben"], val=["anna"]).select("val", [f"scan_{CAFE_TYPED}"], grouping)


def test_a_grouping_file_or_checkpoint_split_spelled_otherwise_names_the_encoding(tmp_path, make_real_export):
    typed, on_disk = f"data_{CAFE_TYPED}_02", f"data_{CAFE_ON_DISK}_02"
    data = make_real_export(tmp_path / "data", patients=("data_0513_01", on_disk), pairs=2, size=8)
    grouping = tmp_path / "grouping.json"
    grouping.write_text(json.dumps({typed: "anna"}))
    with pytest.raises(DataError, match=re.escape("is not a patient folder of the data directory ")
                       + encoding_hint(typed, on_disk)):
        read_grouping(grouping, ["data_0513_01", on_disk])
    split = PatientSplit(train=["data_0513_01"], val=[typed])  # a checkpoint's, written where names are NFC
    with pytest.raises(DataError, match=re.escape(f"not on disk: {typed} ") + encoding_hint(typed, on_disk)):
        prepare_data(DataConfig(data_dir=str(data)), split=split)


def test_a_grouping_file_with_a_mistyped_folder_suggests_the_folder_it_meant(tmp_path):
    grouping = tmp_path / "grouping.json"
    grouping.write_text(json.dumps({"data_0513_1": "anna"}))
    with pytest.raises(DataError) as refused:
        read_grouping(grouping, ["data_0513_01", "data_0513_02", "scan_b"])
    assert str(refused.value) == (f"{grouping}: folder 'data_0513_1' is not a patient folder of the data directory "
                                  "(did you mean 'data_0513_01'?)")


def test_two_folders_of_one_patient_in_two_splits_are_named_as_the_user_wrote_them():
    grouping = {"scan_1": "anna", "scan_2": "anna"}
    with pytest.raises(DataError, match=r"patient 'anna' \(the grouping file puts 'scan_1' and 'scan_2' in it\) "
                                        "is listed in both train and val"):
        manual_split(["anna", "ben"], train=["scan_1"], val=["scan_2"], grouping=grouping)


def test_manual_split_warns_about_unused_patients(caplog):
    with caplog.at_level(logging.WARNING):
        split = manual_split(["a", "b", "c"], ["a"], ["b"], [])
    assert "c" not in split.patients()
    assert "unused: c" in caplog.text


def test_kfold_validates_every_non_test_patient_exactly_once():
    folds = kfold_splits(PATIENTS, k=3, test=["p09"])
    validated = [p for fold in folds for p in fold.val]
    assert sorted(validated) == PATIENTS[:9]
    for fold in folds:
        assert sorted(fold.train + fold.val) == PATIENTS[:9]
        assert fold.test == ["p09"]


def test_kfold_is_deterministic_for_a_seed():
    assert kfold_splits(PATIENTS, k=4, seed=1) == kfold_splits(PATIENTS[::-1], k=4, seed=1)


def test_kfold_with_more_folds_than_patients_is_a_data_error():
    with pytest.raises(DataError, match="k must be between 2 and the 3"):
        kfold_splits(["a", "b", "c", "d"], k=4, test=["d"])


def test_read_grouping_maps_unlisted_folders_to_themselves(tmp_path):
    path = tmp_path / "grouping.json"
    path.write_text(json.dumps({"scan_1": "anna", "scan_2": "anna"}))
    assert read_grouping(path, ["scan_1", "scan_2", "scan_3"]) == {
        "scan_1": "anna", "scan_2": "anna", "scan_3": "scan_3"
    }


@pytest.mark.parametrize(
    "text, problem",
    [
        (None, "grouping file not found"),
        ("{", "invalid JSON"),
        ('["scan_1"]', "expected a JSON object"),
        ('{"scan_1": 5}', "'scan_1' must map to a non-empty patient id"),
        ('{"scan_9": "anna"}', "'scan_9' is not a patient folder"),
        ('{"scan_1": "anna ", "scan_2": "anna"}', "'scan_1' has leading or trailing spaces .*write it as 'anna'"),
    ],
    ids=["missing", "invalid-json", "not-a-mapping", "not-a-string", "unknown-folder", "stray-space"],
)
def test_bad_grouping_file_is_a_data_error_naming_it(tmp_path, text, problem):
    path = tmp_path / "grouping.json"
    if text is not None:
        path.write_text(text)
    with pytest.raises(DataError, match=problem) as error:
        read_grouping(path, ["scan_1", "scan_2"])
    assert str(path) in str(error.value)


def test_grouping_keeps_a_person_in_one_split(tmp_path, make_real_export):
    folders = [f"data_0513_{i:02d}" for i in range(1, 7)]
    data_dir = make_real_export(tmp_path / "data", patients=folders, pairs=2, size=32)
    grouping = tmp_path / "grouping.json"
    grouping.write_text(json.dumps({"data_0513_01": "anna", "data_0513_02": "anna", "data_0513_03": "anna"}))
    for seed in range(6):
        prepared = prepare_data(DataConfig(data_dir=str(data_dir), grouping_file=str(grouping), split_seed=seed))
        anna_splits = {name for name, records in prepared.records.items() for r in records if r.patient_id == "anna"}
        assert len(anna_splits) == 1
        assert sum(prepared.samples_per_patient.values()) == 12 and prepared.samples_per_patient["anna"] == 6


@pytest.mark.parametrize("second_scan", ["SCAN_ANNA", "scan_anna_rescan", "scan_anna-2", "scan_anna scan3"])
def test_a_second_scan_under_a_look_alike_name_in_another_split_is_warned_of(tmp_path, make_real_export, caplog,
                                                                             second_scan):
    """Every folder is its own patient unless a grouping file joins them: 'anna' trained on and 'ANNA' tested on
    may be one person scored on herself. A grouping file that joins them silences the warning."""
    data_dir = make_real_export(tmp_path / "data", patients=["scan_anna", second_scan, "scan_bert"], pairs=2, size=32)
    cfg = DataConfig(data_dir=str(data_dir), manual_splits=True, train_patients=["scan_anna"],
                     val_patients=["scan_bert"], test_patients=[second_scan])
    with caplog.at_level(logging.WARNING, logger="cardiac_dreamer"):
        prepare_data(cfg)
    assert "'scan_anna' (train)" in caplog.text and f"{second_scan!r} (test)" in caplog.text
    assert "grouping file" in caplog.text
    grouping = tmp_path / "grouping.json"
    grouping.write_text(json.dumps({"scan_anna": "anna", second_scan: "anna"}))
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="cardiac_dreamer"):
        prepare_data(DataConfig(data_dir=str(data_dir), grouping_file=str(grouping), manual_splits=True,
                                train_patients=["scan_anna"], val_patients=["scan_bert"], test_patients=[]))
    assert "scan suffix" not in caplog.text


@pytest.mark.parametrize("names", [["p_1", "p_2"], ["phantom_1", "phantom_10"], ["anna", "annabel"]])
def test_patients_whose_names_only_share_a_start_are_not_taken_for_one_person(names):
    from cardiac_dreamer.data.splits import look_alike_across_splits

    assert look_alike_across_splits(PatientSplit(train=[names[0]], val=[names[1]])) == []


def test_prepare_data_uses_the_manual_split_from_the_config(real_export):
    cfg = DataConfig(
        data_dir=str(real_export), manual_splits=True,
        train_patients=["data_0513_03"], val_patients=["data_0513_01"], test_patients=[],
    )
    prepared = prepare_data(cfg)
    assert prepared.split == PatientSplit(train=["data_0513_03"], val=["data_0513_01"], test=[])
    assert {r.folder for r in prepared.records["train"]} == {"data_0513_03"}
    assert prepared.records["test"] == []


def test_prepare_data_rejects_a_given_split_naming_missing_patients(real_export):
    split = PatientSplit(train=["data_0513_01"], val=["ghost"])
    with pytest.raises(DataError, match="not on disk: ghost"):
        prepare_data(DataConfig(data_dir=str(real_export)), split=split)


@pytest.mark.parametrize("make, problem", [
    (lambda path: path.mkdir(), "grouping file is a directory, not a regular file"),
    (lambda path: path.write_text('{"a": ' * 100_000), "invalid JSON: nested too deeply"),
    (lambda path: path.write_text(json.dumps({"data_0513_01": "anna\udcff"})), "is not valid UTF-8 text"),
    (lambda path: path.write_text(json.dumps({"data_0513_01": "anna\0"})), "contains a NUL character"),
], ids=["directory", "nested", "not-utf8-patient-id", "nul-in-patient-id"])
def test_an_unusable_grouping_file_is_a_data_error_naming_it(tmp_path, make, problem):
    path = tmp_path / "grouping.json"
    make(path)
    with pytest.raises(DataError) as error:
        read_grouping(path, ["data_0513_01", "data_0513_02"])
    assert str(error.value).startswith(f"{path}: ") and problem in str(error.value) and "\n" not in str(error.value)
