"""The label check tells which composition rule (additive or se3) the labels follow."""
from pathlib import Path

import pytest
import torch

from cardiac_dreamer.data import TransitionRecord, check_label_consistency, read_records
from cardiac_dreamer.errors import DataError
from cardiac_dreamer.geometry import apply_move

AT1 = torch.tensor([[10.0, -5.0, 30.0, 20.0, -15.0, 60.0], [0.0, 2.0, -4.0, -40.0, 10.0, 170.0]], dtype=torch.float64)
MOVE = torch.tensor([[3.0, 1.0, -2.0, 5.0, 4.0, -8.0], [-1.0, 0.5, 2.0, 10.0, -6.0, 15.0]], dtype=torch.float64)


def records_with(at2: torch.Tensor):
    path = Path("/unused.png")
    return [
        TransitionRecord("p", "p", i, path, path, "a", "b", tuple(a.tolist()), tuple(m.tolist()), tuple(b.tolist()))
        for i, (a, m, b) in enumerate(zip(AT1, MOVE, at2))
    ]


def test_additive_labels_are_recognized_as_additive():
    report = check_label_consistency(records_with(apply_move(AT1, MOVE, "additive")))
    assert report.mode == "additive"
    assert report.matches("additive") and not report.matches("se3")
    assert report.additive_residual_mm == pytest.approx(0.0, abs=1e-9)
    assert report.se3_residual_mm > 0.1 and report.se3_residual_deg > 0.1


def test_additive_labels_exported_to_two_decimals_are_still_additive():
    # 0.334 + 0.334 = 0.668, exported as 0.33, 0.33 and 0.67: a residual of 0.01 that floats read as 0.0100000000000001
    at1, move = [0.33, 1.0, 2.0, 10.33, 0.0, 0.0], [0.33, 0.0, 0.0, 0.33, 0.0, 0.0]
    at2 = [0.67, 1.0, 2.0, 10.67, 0.0, 0.0]
    path = Path("/unused.png")
    report = check_label_consistency([TransitionRecord("p", "p", 0, path, path, "a", "b", tuple(at1), tuple(move),
                                                       tuple(at2))])
    assert report.additive_residual_mm > 0.01  # the float hair the tolerance must absorb
    assert report.matches("additive") and report.breaking == 0, report.summary()


def test_se3_labels_are_recognized_as_se3():
    report = check_label_consistency(records_with(apply_move(AT1, MOVE, "se3")))
    assert report.mode == "se3" and report.matches("se3") and not report.matches("additive")
    assert report.residual("se3") == pytest.approx((0.0, 0.0), abs=1e-6)


def test_summary_is_one_line_with_both_residuals():
    summary = check_label_consistency(records_with(apply_move(AT1, MOVE, "additive"))).summary()
    assert summary.startswith("labels are additive (max residual 0.0000 mm / 0.0000 deg; se3 would leave ")
    assert "\n" not in summary


def test_labels_following_neither_rule_match_neither():
    report = check_label_consistency(records_with(apply_move(AT1, MOVE, "additive") + 5.0))
    assert not report.matches("additive") and not report.matches("se3")
    assert "match neither rule" in report.summary()


def test_one_mistyped_label_is_named_by_its_file_and_entry():
    at1 = torch.tensor([[float(i), 0, 0, 10.0, 0, 0] for i in range(6)], dtype=torch.float64)
    move = torch.full((6, 6), 0.5, dtype=torch.float64)
    at2 = apply_move(at1, move, "additive")
    at2[4, 3] += 30.0  # one roll typed 30 degrees off
    path = Path("/unused.png")
    records = [TransitionRecord("p", "p", i, path, path, "a", "b", tuple(a.tolist()), tuple(m.tolist()),
                                tuple(b.tolist()), source=Path("/data/p/transitions_dataset.json"))
               for i, (a, m, b) in enumerate(zip(at1, move, at2))]
    report = check_label_consistency(records)
    assert report.mode == "additive" and report.breaking == 1
    assert report.summary().endswith("1 of the 6 pairs break it, the furthest /data/p/transitions_dataset.json: "
                                     "entry 4)")


def test_angles_are_compared_on_the_circle():
    at2 = apply_move(AT1, MOVE, "additive")
    at2[1, 5] -= 360.0  # 185 deg written as -175 deg
    assert check_label_consistency(records_with(at2)).matches("additive")


def test_real_export_labels_are_additive(real_export):
    assert check_label_consistency(read_records(real_export)).matches("additive")


def test_phantom_labels_are_additive(phantom_dir):
    assert check_label_consistency(read_records(phantom_dir)).mode == "additive"


def test_no_records_is_a_data_error():
    with pytest.raises(DataError):
        check_label_consistency([])
