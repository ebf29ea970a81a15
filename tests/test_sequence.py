"""Sequential guidance: chains of frames from the sweeps, the second training stage that fits the sequential
estimator into the checkpoint, its evaluation beside the single frame, and the session that fuses with it."""
import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from cardiac_dreamer.config import Config, apply_overrides
from cardiac_dreamer.data import read_records
from cardiac_dreamer.data.chains import MAX_FRAME_STEP, build_chains, check_frame_numbers, sweep_segments
from cardiac_dreamer.data.records import TransitionRecord
from cardiac_dreamer.errors import ConfigError, DataError
from cardiac_dreamer.evaluation import Predictor, evaluate_checkpoint, load_model
from cardiac_dreamer.geometry import apply_move, move_between, pose_error
from cardiac_dreamer.guidance.session import GuidanceSession, SessionSettings
from cardiac_dreamer.io.checkpoint import load_checkpoint, save_checkpoint
from cardiac_dreamer.models import build_model
from cardiac_dreamer.evaluation.sequence import moves_only_predictions
from cardiac_dreamer.models.sequence import sequence_frames
from cardiac_dreamer.models.sequence_inputs import ChainSet, chain_inputs, chain_moves, current_poses, frame_poses
from cardiac_dreamer.pipeline import run_training
from cardiac_dreamer.synthetic import generate_phantom
from cardiac_dreamer.runtime import devices
from test_trainer import TINY_BACKBONE

GUIDANCE_KEYS = ("mae_x_mm", "mae_y_mm", "mae_z_mm", "mae_roll_deg", "mae_pitch_deg", "mae_yaw_deg",
                 "translation_error_mm", "rotation_error_deg", "frames")


def pose_of(frame: int, patient: int = 0) -> tuple:
    return tuple(float(v) for v in (frame, 2 * frame, -frame, 0.5 * frame, patient, 1.0))


def record(patient: str, t1: int, t2: int, folder: str = None, number: int = 0) -> TransitionRecord:
    at1, at2 = pose_of(t1, int(patient[-1])), pose_of(t2, int(patient[-1]))
    return TransitionRecord(patient, folder or patient, 0, Path(f"/{patient}/ft1/{t1}.png"),
                            Path(f"/{patient}/ft2/{t2}.png"), f"ft1/{t1}.png", f"ft2/{t2}.png", at1,
                            tuple(b - a for a, b in zip(at1, at2)), at2, frame_t1=t1, frame_t2=t2)


def numbers(chains, row):
    return [chains.frames[i].number if i >= 0 else None for i in chains.index[row]]


def test_a_chain_is_the_current_frame_and_the_frames_before_it_most_recent_first():
    chains = build_chains([record("p1", 0, 2), record("p1", 1, 3), record("p1", 3, 4)], frames=3)
    assert [f.number for f in chains.frames] == [0, 1, 2, 3, 4]
    assert numbers(chains, 0) == [0, None, None]  # every frame is current once, even without history
    assert numbers(chains, 4) == [4, 3, 2]


def test_a_gap_in_the_frame_numbers_breaks_a_chain():
    gap = MAX_FRAME_STEP + 1
    chains = build_chains([record("p1", 0, 1), record("p1", 1 + gap, 2 + gap)], frames=3)
    assert numbers(chains, 2) == [1 + gap, None, None]
    assert numbers(chains, 3) == [2 + gap, 1 + gap, None]


def test_patients_and_folders_never_share_a_chain():
    records = [record("p1", 0, 1), record("p2", 2, 3), record("p1", 0, 1, folder="p1_scan2")]
    chains = build_chains(records, frames=4)
    for row in chains.index:
        owners = {(chains.frames[i].patient_id, chains.frames[i].folder) for i in row if i >= 0}
        assert len(owners) == 1


def test_chains_hold_only_the_frames_of_the_records_they_are_built_from():
    train = [record("p1", 0, 1), record("p1", 1, 2)]
    chains = build_chains(train, frames=3)  # a split's records: the other split's frames cannot appear
    assert {f.patient_id for f in chains.frames} == {"p1"}
    assert len(chains) == 3


def test_records_without_frame_numbers_give_no_chains():
    plain = TransitionRecord("p1", "p1", 0, Path("/a"), Path("/b"), "a", "b", (0.0,) * 6, (1.0,) * 6, (1.0,) * 6)
    assert len(build_chains([plain], frames=3)) == 0


@pytest.mark.parametrize("composition", ["additive", "se3"])
def test_the_move_from_a_past_frame_carries_its_pose_exactly_to_the_current_one(composition):
    poses = torch.tensor([[1.0, 2.0, 3.0, 10.0, -5.0, 20.0], [4.0, -1.0, 0.5, -12.0, 8.0, 3.0],
                          [0.0, 0.0, 1.0, 2.0, 2.0, -30.0]], dtype=torch.float64)
    index = np.array([[2, 1, 0]])
    features, estimates, moves, present = chain_inputs(index, poses, torch.zeros(3, 512), torch.zeros(3, 6),
                                                       composition)
    carried = apply_move(poses[[2, 1, 0]], moves[0].double(), composition)
    assert torch.allclose(carried, poses[2].expand(3, 6), atol=1e-4)
    assert present.all() and torch.allclose(moves[0, 0], torch.zeros(6), atol=1e-9)
    assert torch.allclose(apply_move(poses[0], move_between(poses[0], poses[1], composition), composition),
                          poses[1], atol=1e-9)


def converging_sweep(patient: str, scale: float, frames: int = 30, rate: float = 0.9) -> list:
    """A sweep closing in on the view geometrically: each move is the same fraction of the pose it leads to."""
    direction = np.array([4.0, -3.0, 2.0, 20.0, -6.0, 12.0]) * scale
    poses = [tuple(direction * rate ** n) for n in range(frames)]
    return [TransitionRecord(patient, patient, n, Path(f"/{patient}/{n}.png"), Path(f"/{patient}/{n + 1}.png"),
                             f"{n}.png", f"{n + 1}.png", poses[n], tuple(np.subtract(poses[n + 1], poses[n])),
                             poses[n + 1], frame_t1=n, frame_t2=n + 1) for n in range(frames - 1)]


def test_the_moves_only_baseline_reads_a_pose_that_the_sweep_s_moves_give_away():
    train = converging_sweep("p1", 1.0) + converging_sweep("p2", 1.5)
    chains = build_chains(converging_sweep("p3", 0.7), frames=3)
    poses = frame_poses(chains)
    moves, present = chain_moves(chains.index, poses, "additive")
    evaluated = ChainSet(torch.zeros(len(chains), 3, 512), torch.zeros(len(chains), 3, 6), moves, present,
                         current_poses(chains, poses).float())
    predicted = moves_only_predictions(train, evaluated, frames=3, composition="additive")
    with_history = present[:, 1].numpy()  # the first frame has no move yet: nothing to read
    error = np.abs(predicted - evaluated.targets.numpy())[with_history]
    assert error.max() < 0.02 * np.abs(evaluated.targets.numpy()).max()  # pose = move x rate / (1 - rate), exactly
    assert moves_only_predictions([], evaluated, frames=3, composition="additive") is None


def test_the_switch_is_off_by_default_and_refuses_a_chain_of_one_frame():
    assert build_model(Config()).sequence is None
    with pytest.raises(ConfigError, match="sequence_frames"):
        apply_overrides(Config(), {"model.sequence_frames": 1})


@pytest.fixture(scope="module")
def sequence_run(phantom_dir, tmp_path_factory):
    config = apply_overrides(Config(), {
        "data.data_dir": str(phantom_dir), "data.image_size": 64, "data.augment": False,
        "model.backbone": TINY_BACKBONE, "model.d_model": 16, "model.num_heads": 2, "model.num_layers": 1,
        "model.sequence_frames": 3,
        "training.batch_size": 8, "training.max_epochs": 1, "training.num_workers": 0, "training.device": "cpu",
    })
    return run_training(config, tmp_path_factory.mktemp("runs"), progress=False, evaluate_test=False)


@pytest.fixture(scope="module")
def sequence_checkpoint(sequence_run, tmp_path_factory):
    """The run's best checkpoint with a fuser marked trained: as the stage left it when it beat the single frame on
    the validation patient, else a copy marked trained (the kept fuser is then the single frame's identity)."""
    path = sequence_run.run_dir / "checkpoints" / "best.ckpt"
    checkpoint = load_checkpoint(path)
    if checkpoint.model_state["sequence.trained"].item() == 1.0:
        return path
    checkpoint.model_state = {**checkpoint.model_state, "sequence.trained": torch.ones(())}
    return save_checkpoint(tmp_path_factory.mktemp("marked") / "best.ckpt", checkpoint)


def test_the_switch_trains_the_sequential_estimator_into_the_best_checkpoint(sequence_run):
    checkpoint = load_checkpoint(sequence_run.run_dir / "checkpoints" / "best.ckpt")
    metrics = checkpoint.metrics
    assert checkpoint.config["model"]["sequence_frames"] == 3
    assert metrics["val_sequence_error_std"] <= metrics["val_single_frame_error_std"]
    # marked trained exactly when an epoch beat the single frame on the validation patients
    assert (checkpoint.model_state["sequence.trained"].item() == 1.0) == (metrics["sequence_epoch"] > 0)


def test_a_resumed_run_does_not_run_the_sequence_stage_again(sequence_run, caplog):
    # resuming a finished run (as after a kill during its test evaluation) must keep the fuser it chose
    last = sequence_run.run_dir / "checkpoints" / "last.ckpt"
    best = sequence_run.run_dir / "checkpoints" / "best.ckpt"
    before = load_checkpoint(best)
    with caplog.at_level("INFO"):
        run_training(Config.from_dict(load_checkpoint(last).config), resume_from=last, progress=False,
                     evaluate_test=False)
    after = load_checkpoint(best)
    assert "sequence stage: already done" in caplog.text
    assert after.metrics == before.metrics
    assert all(torch.equal(after.model_state[key], before.model_state[key])
               for key in before.model_state if key.startswith("sequence."))


def test_a_resume_relinks_a_best_checkpoint_that_a_kill_left_before_the_stage(sequence_run, tmp_path):
    # killed after the stage rewrote the deployed top-k file but before best.ckpt was linked to the new file
    from cardiac_dreamer.training.sequence_stage import train_sequence_stage

    deployed = tmp_path / "cardiac_dreamer-epoch=00.ckpt"
    checkpoint = load_checkpoint(sequence_run.run_dir / "checkpoints" / "best.ckpt")
    save_checkpoint(deployed, checkpoint)
    checkpoint.metrics = {key: value for key, value in checkpoint.metrics.items() if key != "sequence_epoch"}
    best = save_checkpoint(tmp_path / "best.ckpt", checkpoint)  # the old file, without the stage
    config = Config.from_dict(checkpoint.config)
    train_sequence_stage(deployed, {}, config, torch.device("cpu"), best_link=best)
    assert best.samefile(deployed)


def test_the_stage_starts_from_the_single_frame_whatever_the_file_held(sequence_run, phantom_dir, monkeypatch,
                                                                       caplog):
    # an averaged file can hold half a trained fuser (its flag 0.5): the stage's baseline must be the single frame,
    # so with no epoch to train it keeps the single frame, marked untrained
    from cardiac_dreamer.models.registry import model_from_checkpoint
    from cardiac_dreamer.models.sequence_inputs import chain_set
    from cardiac_dreamer.training import sequence_stage
    from cardiac_dreamer.training.sequence_stage import fit_sequence_estimator

    monkeypatch.setattr(sequence_stage, "EPOCHS", 0)

    checkpoint = load_checkpoint(sequence_run.run_dir / "checkpoints" / "best.ckpt")
    model = model_from_checkpoint(checkpoint, "best.ckpt")
    with torch.no_grad():
        model.sequence.out.weight.normal_()
        model.sequence.trained.fill_(0.5)
    records = read_records(phantom_dir)
    chains, _ = chain_set(model, records, 3, 64, torch.device("cpu"))
    with caplog.at_level("WARNING"):
        result = fit_sequence_estimator(model, chains, chains, seed=0)
    assert result["val_sequence_error_std"] == result["val_single_frame_error_std"]
    assert not model.sequence.is_trained
    # and the log says how far the single frame is off in mm and degrees, not only in training stds
    errors = pose_error(chains.targets, chains.estimates[:, 0]).abs()
    mm, deg = float(errors[:, :3].mean()), float(errors[:, 3:].mean())
    assert f"no epoch beat the single frame on the validation patients ({mm:.3g} mm / {deg:.3g} deg per component" \
        in caplog.text


def without_frame_numbers(source, data, patients=("phantom_01", "phantom_02", "phantom_03", "phantom_04")):
    """A copy of ``source`` whose ``patients`` have no frame_t1 / frame_t2."""
    shutil.copytree(source, data)
    for patient in patients:
        transitions = data / patient / "transitions_dataset.json"
        entries = json.loads(transitions.read_text())
        transitions.write_text(json.dumps([{key: value for key, value in entry.items()
                                            if not key.startswith("frame_")} for entry in entries]))
    return data


def test_check_data_applies_the_sequence_stages_rule_and_names_the_patients(phantom_dir, tmp_path, caplog):
    from cardiac_dreamer.config import DataConfig
    from cardiac_dreamer.doctor import check_data

    data = without_frame_numbers(phantom_dir, tmp_path / "data", patients=("phantom_01", "phantom_03"))
    split = {"data_dir": str(data), "manual_splits": True, "train_patients": ["phantom_01", "phantom_02"],
             "val_patients": ["phantom_03"], "test_patients": ["phantom_04"]}
    with pytest.raises(DataError, match=r"the validation patients have none \(phantom_03\)"):
        check_data(DataConfig(**split), sequence_frames=3)
    check_data(DataConfig(**split))  # the data itself is fine without the switch
    with caplog.at_level("WARNING"):
        check_data(DataConfig(**{**split, "val_patients": ["phantom_04"], "test_patients": ["phantom_03"]}),
                   sequence_frames=3)
    assert "left out of the sequence stage (patients phantom_01)" in caplog.text


def test_data_without_frame_numbers_is_refused_before_training(phantom_dir, tmp_path):
    data = without_frame_numbers(phantom_dir, tmp_path / "data")
    config = apply_overrides(Config(), {"data.data_dir": str(data), "data.image_size": 64,
                                        "model.backbone": TINY_BACKBONE, "model.d_model": 16, "model.num_heads": 2,
                                        "model.num_layers": 1, "model.sequence_frames": 3,
                                        "training.device": "cpu", "training.num_workers": 0})
    with pytest.raises(DataError, match="needs frame numbers"):
        run_training(config, tmp_path / "runs", progress=False, evaluate_test=False)
    assert not list((tmp_path / "runs").glob("run_*"))


def test_a_folder_holding_two_sweeps_numbered_alike_is_refused_naming_the_frame():
    # Chained by number, the second sweep's frames were dropped or mixed into the first's timeline, silently.
    first = [record("p1", 0, 1), record("p1", 1, 2)]
    second = dataclasses.replace(record("p1", 0, 1), index=7, at1=(9.0,) * 6, at2=(9.5,) * 6)
    check_frame_numbers({"train": first, "val": [record("p2", 0, 1)]}, 3, "data")  # one sweep each: fine
    with pytest.raises(DataError, match=r"p1: entry 7: frame 0 has another pose than in p1: entry 0: "
                                        r"model.sequence_frames joins .* one folder holds one sweep"):
        check_frame_numbers({"train": first + [second], "val": [record("p2", 0, 1)]}, 3, "data")


def test_the_phantom_never_chains_two_sweeps_of_one_patient(tmp_path):
    # over 580 pairs a patient gets a second sweep, which starts far from the view where the first ended at it
    folder, = generate_phantom(tmp_path, num_patients=1, pairs_per_patient=700, image_size=16)
    segments = sweep_segments(read_records(tmp_path))
    assert len(segments) == 2
    for segment in segments:
        assert len({frame.image.name.split("_")[2] for frame in segment}) == 1  # frames_PPPP_SS_FFFF.png: one SS


def test_only_a_trained_sequential_estimator_is_used():
    model = build_model(apply_overrides(Config(), {"model.sequence_frames": 3, "model.backbone": TINY_BACKBONE,
                                                   "model.variant": "direct"}))
    assert sequence_frames(model) == 0
    model.sequence.trained.fill_(1.0)
    assert sequence_frames(model) == 3


@pytest.fixture(scope="module")
def predictor(sequence_checkpoint):
    return load_model(sequence_checkpoint, device="cpu")


def test_load_model_restores_the_sequential_estimator(predictor):
    assert predictor.sequence_frames == 3


def test_metrics_json_holds_the_sequential_guidance_beside_the_single_frame_on_the_same_frames(
        sequence_checkpoint, tmp_path):
    report, output = evaluate_checkpoint(sequence_checkpoint, split="test", output_dir=tmp_path / "evaluation",
                                         device="cpu", progress=False)
    sequence = json.loads((output / "metrics.json").read_text())["guidance_sequence"]
    assert all(key in sequence for key in GUIDANCE_KEYS)
    assert all(key in sequence["single_frame"] for key in GUIDANCE_KEYS[:-1])
    assert sequence["single_frame"]["samples"] == sequence["frames"] > 0
    assert sequence["vs_single_frame"]["translation_error_mm"] == pytest.approx(
        sequence["translation_error_mm"] / sequence["single_frame"]["translation_error_mm"])
    moves_only = sequence["baselines"]["moves_only"]  # fitted on the training patients' sweeps, no image
    assert moves_only["samples"] == sequence["frames"] and all(key in moves_only for key in GUIDANCE_KEYS[:-1])
    assert "sequential guidance (3 frames)" in report.summary_table()
    assert f"the moves alone (no image): {moves_only['translation_error_mm']:.3g} mm" in report.summary_table()


def test_an_evaluation_on_two_sweeps_numbered_alike_leaves_the_sequential_figures_out_and_says_why(
        sequence_checkpoint, phantom_dir, tmp_path, caplog):
    data = Path(shutil.copytree(phantom_dir, tmp_path / "data"))
    for transitions in data.glob("phantom_*/transitions_dataset.json"):
        entries = json.loads(transitions.read_text())
        entries[1]["frame_t1"] = entries[0]["frame_t1"]  # another pose under the same number: chaining would join
        transitions.write_text(json.dumps(entries))
    _, output = evaluate_checkpoint(sequence_checkpoint, split="test", data_dir=data,
                                    output_dir=tmp_path / "evaluation", device="cpu", progress=False)
    assert json.loads((output / "metrics.json").read_text()).get("guidance_sequence") is None
    said = [record.getMessage() for record in caplog.records if "guidance_sequence is left out" in record.getMessage()]
    assert len(said) == 1 and "has another pose than in" in said[0], said


def test_the_session_fuses_its_history_with_the_sequential_estimator(predictor, phantom_dir):
    images = sorted((phantom_dir / "phantom_01" / "ft1").glob("*.png"))[:3]
    session = GuidanceSession(predictor, SessionSettings(history=2))
    move = np.array([1.0, 0.0, 0.0, 0.0, 2.0, 0.0])
    looks = [predictor.look(image) for image in images]
    guidance = [session.update(image, None if k == 0 else move) for k, image in enumerate(images)]
    assert guidance[0].frames_fused == 1 and np.allclose(guidance[0].pose, looks[0].pose)
    features = torch.stack([look.pooled for look in looks[::-1]])
    own = np.stack([look.pose for look in looks[::-1]])
    expected = predictor.fuse(features, own, np.stack([np.zeros(6), move, 2 * move]))
    assert guidance[2].frames_fused == 3
    assert np.allclose(guidance[2].pose, expected, atol=1e-5)


def test_the_estimator_reads_looks_folded_across_180_deg_as_the_estimates_it_learnt_from(sequence_checkpoint,
                                                                                          phantom_dir):
    """A model whose roll reads near 200 deg: its looks say -160 (folded, as predict does), the estimator learnt
    200."""
    predictor = Predictor.from_checkpoint(sequence_checkpoint, "cpu")
    predictor.model.pose_mean[3] += 200.0
    looks = [predictor.look(image) for image in sorted((phantom_dir / "phantom_01" / "ft1").glob("*.png"))[:2]]
    features, folded = torch.stack([look.pooled for look in looks]), np.stack([look.pose for look in looks])
    raw = folded.copy()
    raw[:, 3] = np.where(raw[:, 3] < 0, raw[:, 3] + 360.0, raw[:, 3])
    assert (folded[:, 3] < 0).all() and (raw[:, 3] > 180).all()
    moves = np.stack([np.zeros(6), [1.0, 0, 0, 0, 2.0, 0]])
    np.testing.assert_allclose(predictor.fuse(features, folded, moves), predictor.fuse(features, raw, moves))


def test_a_bf16_session_fuses_its_history_near_the_fp32_one(monkeypatch, sequence_checkpoint, phantom_dir):
    monkeypatch.setattr(devices, "cpu_supports_bf16", lambda: True)  # the bf16 path on any test machine
    images = sorted((phantom_dir / "phantom_01" / "ft1").glob("*.png"))[:3]
    move = np.array([1.0, 0.0, 0.0, 0.0, 2.0, 0.0])
    fused = []
    for precision in ("32", "bf16"):
        session = GuidanceSession(load_model(sequence_checkpoint, device="cpu", precision=precision),
                                  SessionSettings(history=2))
        fused.append([session.update(image, None if k == 0 else move) for k, image in enumerate(images)][-1])
    assert fused[1].frames_fused == 3
    np.testing.assert_allclose(fused[1].pose, fused[0].pose, rtol=0.05, atol=0.05)


def test_the_sequential_session_drops_the_frames_that_chose_the_move_it_judges(predictor, phantom_dir):
    image = sorted((phantom_dir / "phantom_01" / "ft1").glob("*.png"))[0]
    session = GuidanceSession(predictor, SessionSettings(history=1))
    session.update(image)
    decided = session.update(image, np.zeros(6))  # two looks at one pose: a move is suggested
    assert decided.frames_fused == 2 and np.any(decided.move)
    after = session.update(image, decided.move)  # the suggested move, made: its looks are not evidence
    assert after.frames_fused == 1 and np.allclose(after.pose, after.frame_pose)
