"""data.pair_gap_frames: training pairs whose t2 is drawn again further away along the sweep, so the world model
sees moves larger than the export's, with every re-drawn pair as consistent as an exported one."""
import dataclasses
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from cardiac_dreamer.config import Config, DataConfig, apply_overrides
from cardiac_dreamer.data.chains import MAX_FRAME_STEP
from cardiac_dreamer.data.pair_gaps import regap_pairs
from cardiac_dreamer.data.prepare import build_datasets, prepare_data
from cardiac_dreamer.data.records import TransitionRecord
from cardiac_dreamer.errors import DataError
from cardiac_dreamer.geometry import apply_move
from cardiac_dreamer.pipeline import run_training
from cardiac_dreamer.synthetic import generate_phantom
from test_bad_input import snapshot
from test_sequence import pose_of, record
from test_trainer import TINY_BACKBONE


def sweep(patient: str = "p1", frames: int = 40) -> list:
    """Pairs (k, k + 1) along one numbered sweep."""
    return [record(patient, k, k + 1) for k in range(frames - 1)]


def frame_of(image: Path) -> int:
    return int(image.stem)


@pytest.mark.parametrize("composition", ["additive", "se3"])
def test_a_regapped_pair_joins_t1_to_another_frame_of_its_sweep_with_the_move_between_their_labels(composition):
    records = sweep() + sweep("p2")
    regapped = regap_pairs(records, 10, seed=0, composition=composition)
    assert len(regapped) == len(records)
    kept = [after is before for before, after in zip(records, regapped)]
    assert sum(kept) <= 2  # only a sweep's first pair can draw "earlier" and find nothing there
    for before, after in zip(records, regapped):
        if after is before:
            continue
        assert (after.patient_id, after.image_t1, after.at1, after.frame_t1) == (
            before.patient_id, before.image_t1, before.at1, before.frame_t1)  # what image-only guidance reads
        assert 0 < abs(after.frame_t2 - after.frame_t1) <= 10
        assert after.at2 == pose_of(after.frame_t2, int(after.patient_id[-1]))  # that frame's own label
        assert frame_of(after.image_t2) == after.frame_t2 and after.image_t2.parts[1] == after.patient_id
        carried = apply_move(torch.tensor(after.at1, dtype=torch.float64),
                             torch.tensor(after.action_change, dtype=torch.float64), composition)
        np.testing.assert_allclose(carried.numpy(), after.at2, atol=1e-9)
    gaps = [after.frame_t2 - after.frame_t1 for after in regapped]
    assert max(gaps) > 5 and min(gaps) < -5  # spread over the range both ways, not the export's gap of 1


def test_regapping_is_the_same_for_the_same_seed_and_the_identity_at_zero():
    records = sweep()
    assert regap_pairs(records, 12, seed=3) == regap_pairs(records, 12, seed=3)
    assert regap_pairs(records, 12, seed=3) != regap_pairs(records, 12, seed=4)
    assert regap_pairs(records, 0, seed=3) == records


def test_a_pair_never_reaches_across_a_break_in_the_sweep_nor_into_another_folder():
    jump = MAX_FRAME_STEP + 1
    records = [record("p1", 0, 1), record("p1", 1 + jump, 2 + jump), record("p1", 0, 1, folder="p1_scan2")]
    regapped = regap_pairs(records, 50, seed=0)
    assert regapped[0].frame_t2 == 1  # the frames after the break are another segment
    assert regapped[1].frame_t2 == 2 + jump
    assert regapped[2].frame_t2 == 1 and regapped[2].folder == "p1_scan2"


def test_a_folder_holding_two_sweeps_numbered_alike_is_refused_naming_the_setting():
    second = dataclasses.replace(record("p1", 0, 1), index=7, at1=(9.0,) * 6, at2=(9.5,) * 6)
    with pytest.raises(DataError, match=r"p1: entry 7: frame 0 has another pose .* data.pair_gap_frames joins"):
        regap_pairs(sweep() + [second], 10, seed=0)


def test_pairs_without_frame_numbers_or_another_frame_in_reach_are_kept_as_they_are():
    plain = TransitionRecord("p1", "p1", 0, Path("/a"), Path("/b"), "a", "b", (0.0,) * 6, (1.0,) * 6, (1.0,) * 6)
    last = record("p1", 5, 6)
    assert regap_pairs([plain, last], 20, seed=0) == [plain, last]


def test_training_moves_grow_while_the_evaluated_pairs_and_the_exported_records_stay(tmp_path):
    """The training dataset and the model's move statistics take the re-drawn pairs; validation and test, and
    the records the baselines and the sequence stage read, keep the export's."""
    generate_phantom(tmp_path / "data", num_patients=3, pairs_per_patient=60, image_size=32, seed=0)
    base = DataConfig(data_dir=str(tmp_path / "data"), image_size=32, train_patients=["phantom_01"],
                      val_patients=["phantom_02"], test_patients=["phantom_03"])
    exported = prepare_data(base)
    regapped = prepare_data(dataclasses.replace(base, pair_gap_frames=32))
    assert regapped.records == exported.records
    assert regapped.training_pairs != exported.training_pairs == exported.records["train"]
    assert (np.asarray(regapped.stats.move.std) > 1.5 * np.asarray(exported.stats.move.std)).all()
    datasets = build_datasets(regapped, dataclasses.replace(base, pair_gap_frames=32))
    assert datasets["train"].records == regapped.training_pairs
    assert datasets["val"].records == exported.records["val"]


def test_a_broken_frame_only_the_sequence_stage_reads_is_refused_before_the_run_is_made(tmp_path):
    """Re-drawn pairs leave some exported t2 images out of training; the sequence stage still reads them, after
    the fit, so they are checked before anything is written."""
    generate_phantom(tmp_path / "data", num_patients=3, pairs_per_patient=60, image_size=32, seed=0)
    settings = {"data.data_dir": str(tmp_path / "data"), "data.image_size": 32, "data.pair_gap_frames": 32,
                "data.train_patients": ["phantom_01"], "data.val_patients": ["phantom_02"],
                "data.test_patients": ["phantom_03"], "model.backbone": TINY_BACKBONE, "model.d_model": 16,
                "model.num_heads": 2, "model.num_layers": 1, "model.sequence_frames": 3, "training.device": "cpu",
                "training.num_workers": 0}
    config = apply_overrides(Config(), settings)
    prepared = prepare_data(config.data)
    trained = {image for pair in prepared.training_pairs for image in (pair.image_t1, pair.image_t2)}
    left_out = next(record.image_t2 for record in prepared.records["train"] if record.image_t2 not in trained)
    left_out.write_bytes(b"not a png")
    with pytest.raises(DataError, match=left_out.name):
        run_training(config, tmp_path / "runs", progress=False, evaluate_test=False)
    assert not list((tmp_path / "runs").glob("run_*"))


@pytest.mark.parametrize("output, flags, said", [
    ("data/regapped", [], "lies inside"),  # a copy of the data inside the data: a patient folder more
    ("regapped", ["--gap_frames", "-5"], "--gap_frames must be >= 1, got -5"),  # crashed after copying
])
def test_the_regapped_copy_refuses_what_it_cannot_write_before_copying(tmp_path, output, flags, said):
    data = tmp_path / "data"
    generate_phantom(data, num_patients=1, pairs_per_patient=3, image_size=16)
    before = snapshot(data)
    script = Path(__file__).parents[1] / "benchmarks" / "regapped_copy.py"
    result = subprocess.run([sys.executable, str(script), str(data), str(tmp_path / output), "--patients",
                             "phantom_01", *flags], capture_output=True, text=True)
    assert result.returncode == 2 and said in result.stderr and "Traceback" not in result.stderr, result.stderr
    assert snapshot(data) == before and not (tmp_path / output).exists()
