"""Poses and moves are standardized per axis with their own statistics, fitted on the training split only."""
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from cardiac_dreamer.config import DataConfig
from cardiac_dreamer.data import AxisStats, NormalizationStats, TransitionRecord, prepare_data
from cardiac_dreamer.errors import DataError


def record(at1, move, index=0) -> TransitionRecord:
    at2 = tuple(a + m for a, m in zip(at1, move))
    path = Path("/unused.png")
    return TransitionRecord("p", "p", index, path, path, "a.png", "b.png", tuple(at1), tuple(move), at2)


RECORDS = [
    record((100.0, 0.0, 5.0, 10.0, 0.0, 90.0), (1.0, 0.5, 0.0, 2.0, 0.0, -1.0), 0),
    record((140.0, 20.0, 5.0, 30.0, 0.0, 70.0), (-1.0, 0.1, 0.0, -2.0, 0.0, 3.0), 1),
]


def test_pose_stats_come_from_at1_and_at2_together():
    stats = NormalizationStats.fit(RECORDS)
    poses = np.array([r.at1 for r in RECORDS] + [r.at2 for r in RECORDS])
    assert stats.pose.mean == pytest.approx(poses.mean(0).tolist())
    assert stats.pose.std[0] == pytest.approx(poses[:, 0].std())


def test_pose_stats_of_angles_either_side_of_180_degrees_describe_their_spread_not_a_turn():
    rolls = [(178.0, 1.0), (-178.0, -1.0), (179.0, 2.0)]  # at1 178, -178, 179; at2 179, -179, -179
    stats = NormalizationStats.fit([record((0.0, 0, 0, roll, 0, 0), (0.0, 0, 0, move, 0, 0), index)
                                    for index, (roll, move) in enumerate(rolls)])
    unwrapped = np.array([178.0, 182.0, 179.0, 179.0, 181.0, 181.0])
    assert (stats.pose.mean[3] - unwrapped.mean() + 180.0) % 360.0 == pytest.approx(180.0)  # 180 and -180 alike
    assert stats.pose.std[3] == pytest.approx(unwrapped.std())  # 1.6 deg, not the 178 deg of the numbers as written


def test_move_stats_come_from_the_moves_alone():
    stats = NormalizationStats.fit(RECORDS)
    moves = np.array([r.action_change for r in RECORDS])
    assert stats.move.mean == pytest.approx(moves.mean(0).tolist())
    assert stats.move.std[0] == pytest.approx(1.0) and stats.pose.std[0] > 10


def test_an_axis_that_never_varies_gets_std_one():
    stats = NormalizationStats.fit(RECORDS)
    assert stats.pose.std[4] == 1.0 and stats.move.std[2] == 1.0


def test_fitting_on_no_records_is_a_data_error():
    with pytest.raises(DataError, match="no training records"):
        NormalizationStats.fit([])


def test_stats_round_trip_exactly_through_a_dict_and_json():
    stats = NormalizationStats.fit(RECORDS)
    assert NormalizationStats.from_dict(stats.to_dict()) == stats
    assert NormalizationStats.from_dict(json.loads(json.dumps(stats.to_dict()))) == stats


def test_from_dict_rejects_a_short_vector():
    values = NormalizationStats.identity().to_dict()
    values["move"]["std"] = [1.0] * 5
    with pytest.raises(DataError, match="std must be 6 finite numbers"):
        NormalizationStats.from_dict(values)


def test_normalize_keeps_the_tensor_dtype_and_denormalize_inverts_it():
    stats = NormalizationStats.fit(RECORDS).pose
    x = torch.tensor([stats.mean, [120.0, 10.0, 5.0, 20.0, 1.0, 80.0]], dtype=torch.float64)
    z = stats.normalize(x)
    assert z.dtype == torch.float64
    assert torch.equal(z[0], torch.zeros(6, dtype=torch.float64))
    assert torch.allclose(stats.denormalize(z), x)


def test_normalize_works_on_numpy_arrays():
    stats = AxisStats(mean=[1.0] * 6, std=[2.0] * 6)
    assert np.allclose(stats.normalize(np.full((3, 6), 5.0)), 2.0)


def test_prepare_data_fits_on_the_training_patients_only(real_export):
    prepared = prepare_data(DataConfig(data_dir=str(real_export)))
    assert prepared.stats == NormalizationStats.fit(prepared.records["train"])
    everyone = [r for records in prepared.records.values() for r in records]
    assert prepared.stats != NormalizationStats.fit(everyone)
