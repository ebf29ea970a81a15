"""GuidanceSession: fusion of carried-forward estimates, the suggested move, arrival, confidence and the planner.

The fakes here (also used by the navigation tests) make the "image" the true pose itself: :class:`PoseFrames`
renders the pose as its frame and :class:`KnownPredictor` reads it back with a chosen bias and noise, so a test
knows exactly what a perfect, biased or noisy model estimates.
"""
import subprocess
import sys
import warnings
from fractions import Fraction
from pathlib import Path
from types import SimpleNamespace
from typing import Optional, Sequence

import numpy as np
import pytest
import torch

from cardiac_dreamer.errors import ConfigError, DataError
from cardiac_dreamer.evaluation import load_model
from cardiac_dreamer.geometry import apply_move
from cardiac_dreamer.guidance.session import GuidanceSession, SessionSettings, suggested_move
from cardiac_dreamer.runtime import devices
from test_predictor import save_tiny_checkpoint

REPO = Path(__file__).resolve().parents[1]


class PoseFrames:
    """A patient whose frame at a pose is the pose: ``render(pose) -> float64 [6]``."""

    def render(self, pose: Sequence[float], image_size: Optional[int] = None,
               rng: Optional[np.random.Generator] = None) -> np.ndarray:
        return np.array(pose, dtype=np.float64)


class KnownPredictor:
    """``predict(frame) = pose + bias + noise_std * N(0, 1)``; with moves, the world model imagines
    ``apply_move(pose, move_gain * move)`` (``move_gain`` < 1: it believes moves fall short)."""

    def __init__(self, bias=(0.0,) * 6, noise_std: float = 0.0, composition: str = "additive",
                 can_imagine: bool = True, move_gain: float = 1.0, seed: int = 0):
        self.bias = np.asarray(bias, dtype=np.float64)
        self.noise_std, self.composition, self.move_gain = noise_std, composition, move_gain
        self.can_imagine = can_imagine
        self.rng = np.random.default_rng(seed)

    def look(self, image) -> SimpleNamespace:
        return SimpleNamespace(pose=self.predict(image),
                               imagine=lambda moves: self.predict([image] * len(moves), moves))

    def predict(self, images, moves=None) -> np.ndarray:
        if moves is None:
            return np.asarray(images, dtype=np.float64) + self.bias + self.noise_std * self.rng.standard_normal(6)
        poses = torch.from_numpy(np.array(images, dtype=np.float64))  # [K, 6]
        moves = torch.from_numpy(np.asarray(moves, dtype=np.float64)) * self.move_gain
        return apply_move(poses, moves, self.composition).numpy() + self.bias


def walk(composition: str, frames: int = 8, seed: int = 0):
    """``(poses [F, 6], moves [F - 1, 6])`` with ``poses[k + 1] = apply_move(poses[k], moves[k])``."""
    rng = np.random.default_rng(seed)
    poses, moves = [rng.uniform(-15, 15, 6)], rng.uniform(-4, 4, (frames - 1, 6))
    for move in moves:
        poses.append(apply_move(torch.from_numpy(poses[-1]), torch.from_numpy(move), composition).numpy())
    return np.array(poses), moves


def run_session(session: GuidanceSession, poses: np.ndarray, moves: np.ndarray) -> list:
    guidance = [session.update(poses[0])]
    for pose, move in zip(poses[1:], moves):
        guidance.append(session.update(pose, executed_move=move))
    return guidance


@pytest.mark.parametrize("composition", ["additive", "se3"])
def test_fusing_exact_estimates_through_exact_moves_gives_the_exact_pose(composition):
    poses, moves = walk(composition)
    session = GuidanceSession(KnownPredictor(composition=composition), SessionSettings(history=4))
    for pose, guidance in zip(poses, run_session(session, poses, moves)):
        np.testing.assert_allclose(guidance.pose, pose, atol=1e-9)
    assert guidance.frames_fused == 5
    assert guidance.spread_mm == pytest.approx(0.0, abs=1e-9) and guidance.spread_deg == pytest.approx(0.0, abs=1e-5)


def test_history_zero_is_the_current_frame_alone_and_claims_no_confidence():
    poses, moves = walk("additive")
    session = GuidanceSession(KnownPredictor(noise_std=2.0), SessionSettings(history=0))
    for guidance in run_session(session, poses, moves):
        np.testing.assert_array_equal(guidance.pose, guidance.frame_pose)
        assert guidance.frames_fused == 1 and guidance.spread_mm is None and guidance.spread_deg is None


def test_an_unknown_move_drops_the_history():
    poses, moves = walk("additive")
    session = GuidanceSession(KnownPredictor(), SessionSettings(history=4))
    run_session(session, poses[:4], moves[:3])
    assert session.update(poses[4]).frames_fused == 1


def test_the_median_ignores_one_wild_frame():
    poses, moves = walk("additive", frames=5)
    predictor = KnownPredictor()
    session = GuidanceSession(predictor, SessionSettings(history=4))
    run_session(session, poses[:3], moves[:2])
    predictor.bias = np.array([40.0, -30.0, 25.0, 60.0, -50.0, 45.0])  # one frame throws the model
    session.update(poses[3], executed_move=moves[2])
    predictor.bias = np.zeros(6)
    np.testing.assert_allclose(session.update(poses[4], executed_move=moves[3]).pose, poses[4], atol=1e-9)


def test_looks_either_side_of_180_degrees_fuse_near_180_not_at_the_view():
    session = GuidanceSession(KnownPredictor(), SessionSettings(history=1))
    session.update([0.0, 0, 0, 179.0, 0, 0])
    guidance = session.update([0.0, 0, 0, -179.0, 0, 0], executed_move=np.zeros(6))  # the mean of the two as numbers: 0
    assert abs(guidance.pose[3]) == pytest.approx(180.0) and not guidance.arrived
    assert abs(guidance.move[3]) == pytest.approx(180.0)


def test_the_suggested_move_turns_the_short_way_round():
    assert suggested_move(np.array([1.0, 0, 0, 185.0, -190.0, 20.0]), "additive").tolist() == \
        [-1.0, 0.0, 0.0, 175.0, -170.0, -20.0]


def test_the_estimates_that_chose_a_move_do_not_judge_where_it_led():
    # At 20 mm the model reads 14 twice and sends the probe 14 mm: it lands at 6 mm, where the model reads 6.
    # Carried through that move the first looks read 14 - 14 = 0 "by construction": the old rule's median(0, 6)
    # = 3 mm said "arrived" 6 mm from the view. Only the frames taken after the move may judge it.
    predictor = KnownPredictor(bias=[-6.0, 0, 0, 0, 0, 0])
    session = GuidanceSession(predictor, SessionSettings(history=1))
    far = np.array([20.0, 0, 0, 0, 0, 0])
    session.update(far)
    chosen = session.update(far, executed_move=np.zeros(6))
    np.testing.assert_allclose(chosen.move, [-14.0, 0, 0, 0, 0, 0])
    predictor.bias = np.zeros(6)
    after = session.update(np.array([6.0, 0, 0, 0, 0, 0]), executed_move=chosen.move)
    assert not after.arrived and after.frames_fused == 1
    np.testing.assert_allclose(after.pose, [6.0, 0, 0, 0, 0, 0])


@pytest.mark.parametrize("hand", [0.6, 1.2, 1.5])
def test_a_suggested_move_made_long_or_short_still_drops_the_looks_that_chose_it(hand):
    # The model reads 0.7x the pose: at 40 mm it reads 28 and sends the probe 28 mm. A hand that makes 1.2x of it
    # lands at 6.4 mm; carried through that move the looks that chose it read 28 - 33.6 = -5.6, and with the fresh
    # look (4.5) their mean said "arrived" 6.4 mm from the view. They chose the move, so they may not judge it.
    predictor = KnownPredictor()
    predictor.predict = lambda images, moves=None: 0.7 * np.asarray(images, dtype=np.float64)
    session = GuidanceSession(predictor, SessionSettings(history=1))
    far = np.array([40.0, 0, 0, 0, 0, 0])
    session.update(far)
    chosen = session.update(far, executed_move=np.zeros(6))
    made = hand * chosen.move
    after = session.update(far + made, executed_move=made)
    assert after.frames_fused == 1 and not after.arrived and not after.move.any()  # holds still for a fresh look


def test_a_move_in_another_direction_keeps_the_looks():
    session = GuidanceSession(KnownPredictor(), SessionSettings(history=2))
    far = np.array([40.0, 0, 0, 0, 0, 0])
    for move in (None, np.zeros(6), np.zeros(6)):
        chosen = session.update(far, executed_move=move)
    elsewhere = np.array([0.0, 10.0, 0, 0, 0, 0])  # the sonographer went elsewhere: the looks still hold
    after = session.update(far + elsewhere, executed_move=elsewhere)
    assert chosen.move[0] < 0 and after.frames_fused == 3
    np.testing.assert_allclose(after.pose, far + elsewhere)


def test_the_session_holds_still_until_history_plus_one_looks_decide():
    session = GuidanceSession(KnownPredictor(), SessionSettings(history=2))
    near, outside = np.array([3.0, 0, 0, 0, 0, 0]), np.array([7.0, 0, 0, 0, 0, 0])
    holds = [session.update(near), session.update(outside, executed_move=np.zeros(6))]
    assert all(not guidance.arrived and not guidance.move.any() for guidance in holds)
    decided = session.update(near, executed_move=np.zeros(6))  # looks 3, 7, 3 mm: the median says 3 mm
    assert decided.arrived and decided.frames_fused == 3
    np.testing.assert_allclose(decided.pose, near)


def test_the_spread_measures_how_much_the_fused_frames_disagree():
    session = GuidanceSession(KnownPredictor(), SessionSettings(history=1))
    session.update(np.array([3.0, 0, 0, 0, 0, 0]))
    guidance = session.update(np.array([-3.0, 0, 0, 0, 0, 0]), executed_move=np.zeros(6))
    assert guidance.spread_mm == pytest.approx(3.0) and guidance.spread_deg == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize("composition", ["additive", "se3"])
def test_the_suggested_move_takes_the_estimate_to_the_view(composition):
    pose = np.array([4.0, -7.0, 2.0, 12.0, -5.0, 8.0])
    move = GuidanceSession(KnownPredictor(composition=composition)).update(pose).move
    if composition == "additive":
        np.testing.assert_allclose(move, -pose)
    landed = apply_move(torch.from_numpy(pose), torch.from_numpy(move), composition).numpy()
    np.testing.assert_allclose(landed, np.zeros(6), atol=1e-9)


@pytest.mark.parametrize("pose, arrived", [
    ([4.9, -4.9, 0, 4.9, -4.9, 0], True),
    ([5.1, 0, 0, 0, 0, 0], False),
    ([0, 0, 0, 0, 0, -5.1], False),
    ([0, 0, 0, 358.0, 0, 0], True),  # -2 degrees, folded
])
def test_arrival_needs_every_component_within_the_threshold(pose, arrived):
    assert GuidanceSession(KnownPredictor()).update(np.array(pose, dtype=float)).arrived is arrived


def test_the_arrival_threshold_is_configurable():
    session = GuidanceSession(KnownPredictor(), SessionSettings(arrival_mm=2.0, arrival_deg=1.0))
    assert not session.update(np.array([3.0, 0, 0, 0, 0, 0])).arrived
    assert session.update(np.array([1.5, 0, 0, 0.5, 0, 0])).arrived


def test_the_imagine_planner_picks_the_move_the_world_model_imagines_nearest_the_view():
    # The world model believes moves fall short by 20 %: the full suggestion x 1.25 lands on the view.
    session = GuidanceSession(KnownPredictor(move_gain=0.8), SessionSettings(planner="imagine"))
    pose = np.array([10.0, -8.0, 6.0, 12.0, -9.0, 7.0])
    np.testing.assert_allclose(session.update(pose).move, -1.25 * pose)


def test_the_imagine_planner_ranks_candidates_under_a_vanishing_arrival_threshold_without_a_warning():
    session = GuidanceSession(KnownPredictor(move_gain=0.8), SessionSettings(planner="imagine", arrival_mm=1e-320))
    pose = np.array([10.0, -8.0, 6.0, 12.0, -9.0, 7.0])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # numpy's "overflow encountered in divide" was let through
        guidance = session.update(pose)
    assert not guidance.arrived and np.isfinite(guidance.move).all()


def test_a_world_model_that_imagines_moves_exactly_plans_the_direct_move():
    session = GuidanceSession(KnownPredictor(), SessionSettings(planner="imagine"))
    pose = np.array([10.0, -8.0, 6.0, 12.0, -9.0, 7.0])
    np.testing.assert_allclose(session.update(pose).move, suggested_move(pose, "additive"))


def test_the_imagine_planner_needs_a_world_model():
    with pytest.raises(ConfigError, match="direct"):
        GuidanceSession(KnownPredictor(can_imagine=False), SessionSettings(planner="imagine"))


@pytest.mark.parametrize("settings", [{"history": -1}, {"history": 1.5}, {"history": True}, {"arrival_mm": 0.0},
                                      {"arrival_deg": float("nan")}, {"arrival_mm": "5"}, {"arrival_deg": None},
                                      {"arrival_mm": 10**400}, {"planner": "dream"}])
def test_bad_settings_are_refused(settings):
    with pytest.raises(ConfigError):
        SessionSettings(**settings)


def test_settings_take_any_real_number_as_a_float_and_a_session_refuses_what_is_no_predictor():
    assert SessionSettings(arrival_deg=Fraction(1, 3)).arrival_deg == pytest.approx(1 / 3)
    with pytest.raises(TypeError, match="GuidanceSession takes a Predictor .* got NoneType"):
        GuidanceSession(None)


def test_a_checkpoint_path_or_a_dict_of_settings_is_pointed_to_what_takes_it(tmp_path):
    with pytest.raises(TypeError, match=r"GuidanceSession.from_checkpoint\(path\)"):
        GuidanceSession(tmp_path / "best.ckpt")
    with pytest.raises(TypeError, match=r"settings must be SessionSettings\(history=..., planner=...\), got dict"):
        GuidanceSession(KnownPredictor(), {"history": 2})


@pytest.mark.parametrize("pose", [[0.0] * 5, None, [np.nan] * 6, "abcdef"])
def test_the_public_helpers_refuse_what_is_no_pose(pose):
    session = GuidanceSession(KnownPredictor())
    if pose is None or len(pose) != 6:  # 5 numbers read as "arrived"; None gave an IndexError
        with pytest.raises(DataError, match=r"poses must be \[\.\.\., 6\] numbers"):
            session.within_arrival(pose)
    with pytest.raises(DataError, match="pose must be 6 finite numbers"):  # NaN gave a NaN move
        suggested_move(pose, "additive")


def test_numpy_numbers_from_a_notebook_sweep_are_settings():
    settings = SessionSettings(history=np.int64(4), arrival_mm=np.float32(2.5))
    assert settings.history == 4 and type(settings.history) is int


@pytest.mark.parametrize("move", [[np.nan] * 6, [1.0] * 5, "abcdef", {"x": 1.0}, [1e300, 0, 0, 0, 0, 1e300],
                                  ["1.5", "0", "0", "0", "0", "0"], [True, False, False, False, False, False],
                                  [[0.0] * 3, [0.0] * 3], np.zeros(6, dtype=complex), None])
def test_an_executed_move_that_is_not_six_finite_numbers_is_refused(move):
    # 1e300 mm: a tracker glitch, which the session answered with a suggested move of -1e300 mm; a 2 x 3 array was
    # read as one move and a complex one lost its imaginary part
    session = GuidanceSession(KnownPredictor(), SessionSettings(history=2))
    session.update(np.zeros(6))
    if move is None:
        return  # None is the documented "motion unknown"
    with pytest.raises(DataError, match="executed_move must be 6 finite numbers"):
        session.update(np.zeros(6), executed_move=move)


def test_a_frame_the_model_reads_as_nan_is_refused_and_kept_out_of_the_history():
    predictor = KnownPredictor()
    session = GuidanceSession(predictor, SessionSettings(history=1))
    session.update(np.zeros(6))
    predictor.bias = np.full(6, np.nan)  # an overflow inside the model
    with pytest.raises(DataError, match="the model's estimate of this frame is not finite"):
        session.update(np.zeros(6), executed_move=np.zeros(6))
    predictor.bias = np.zeros(6)
    guidance = session.update(np.array([20.0, 0, 0, 0, 0, 0]), executed_move=np.zeros(6))
    assert np.isfinite(guidance.pose).all() and guidance.pose[0] == pytest.approx(10.0)  # median of 0 and 20


def test_a_bad_move_drops_the_history_so_a_loop_that_skips_it_fuses_no_stale_look():
    # A tracker's dropout (NaN) is refused like an unreadable frame; the probe moved by an unknown amount, so the
    # looks before it no longer say where it is: the next frame is judged on its own, not with 30 mm stale looks.
    session = GuidanceSession(KnownPredictor(), SessionSettings(history=2))
    far = np.array([30.0, 0, 0, 0, 0, 0])
    session.update(far)
    session.update(far, executed_move=np.zeros(6))
    with pytest.raises(DataError, match="executed_move"):
        session.update(far, executed_move=[np.nan] * 6)
    guidance = session.update(np.array([10.0, 0, 0, 0, 0, 0]), executed_move=np.zeros(6))
    assert guidance.frames_fused == 1
    np.testing.assert_allclose(guidance.pose, [10.0, 0, 0, 0, 0, 0])


def test_a_tensor_move_that_requires_grad_is_a_move():
    session = GuidanceSession(KnownPredictor(), SessionSettings(history=1))
    session.update(np.array([3.0, 0, 0, 0, 0, 0]))
    move = torch.tensor([1.0, 0, 0, 0, 0, 0], requires_grad=True)
    np.testing.assert_allclose(session.update(np.array([4.0, 0, 0, 0, 0, 0]), executed_move=move).pose,
                               [4.0, 0, 0, 0, 0, 0])


def test_a_suggested_move_changed_in_place_by_the_caller_is_not_the_move_the_session_suggested():
    # a loop that clips the returned move in place and makes it: the looks that chose -30 mm must stay, as they do
    # when the loop clips a copy, since -5 mm is not the move they chose
    session = GuidanceSession(KnownPredictor(), SessionSettings(history=2))
    far = np.array([30.0, 0, 0, 0, 0, 0])
    guidance = session.update(far)
    for _ in range(2):
        guidance = session.update(far, executed_move=np.zeros(6))
    np.clip(guidance.move, -5.0, 5.0, out=guidance.move)
    after = session.update(far + guidance.move, executed_move=guidance.move)
    assert after.frames_fused == 3
    np.testing.assert_allclose(after.pose, [25.0, 0, 0, 0, 0, 0])


class SequentialKnown(KnownPredictor):
    """A checkpoint with a trained sequential estimator of K = 3 frames that averages the carried estimates."""

    sequence_frames = 3

    def look(self, image) -> SimpleNamespace:
        return SimpleNamespace(pose=self.predict(image), pooled=torch.zeros(512))

    def fuse(self, features, estimates, moves) -> np.ndarray:
        assert len(features) == len(estimates) == len(moves) <= self.sequence_frames
        carried = apply_move(torch.from_numpy(estimates), torch.from_numpy(moves), self.composition)
        return carried.mean(0).numpy()


def test_a_sequential_session_reports_the_frames_its_estimator_read():
    poses, moves = walk("additive", frames=8)
    session = GuidanceSession(SequentialKnown(), SessionSettings(history=6))
    assert session.fuses_sequentially
    guidance = run_session(session, poses, moves)[-1]
    assert guidance.frames_fused == 3  # seven looks kept, the last three fused
    np.testing.assert_allclose(guidance.pose, poses[-1], atol=1e-9)


class UnreadableFrames(KnownPredictor):
    """A frame of None is one the model cannot read (a dropped capture)."""

    def look(self, image):
        if image is None:
            raise ValueError("no frame")
        return super().look(image)


def test_a_frame_that_cannot_be_read_keeps_the_move_made_before_it():
    # At 30 mm with two looks, the probe moves -20 mm; that frame is lost, the next comes after no further move.
    # The history must be carried by the lost frame's move: fused 10 mm, not the stale 30.
    session = GuidanceSession(UnreadableFrames(), SessionSettings(history=2))
    far = np.array([30.0, 0, 0, 0, 0, 0])
    session.update(far)
    session.update(far, executed_move=np.zeros(6))
    with pytest.raises(ValueError, match="no frame"):
        session.update(None, executed_move=[-20.0, 0, 0, 0, 0, 0])
    guidance = session.update(far - [20.0, 0, 0, 0, 0, 0], executed_move=np.zeros(6))
    assert guidance.frames_fused == 3
    np.testing.assert_allclose(guidance.pose, [10.0, 0, 0, 0, 0, 0])


def test_a_suggested_move_split_by_an_unreadable_frame_still_drops_the_looks_that_chose_it():
    # The model reads 40 mm as 40 and sends the probe 40 mm back; a frame half-way is lost. Judged on the whole
    # move, the looks that chose it are dropped; judged half by half, they stayed and read "arrived" at 0 mm.
    session = GuidanceSession(UnreadableFrames(), SessionSettings(history=2))
    far = np.array([40.0, 0, 0, 0, 0, 0])
    for move in (None, np.zeros(6), np.zeros(6)):
        chosen = session.update(far, executed_move=move)
    np.testing.assert_allclose(chosen.move, -far)
    with pytest.raises(ValueError, match="no frame"):
        session.update(None, executed_move=[-20.0, 0, 0, 0, 0, 0])
    after = session.update(np.zeros(6), executed_move=[-20.0, 0, 0, 0, 0, 0])
    assert after.frames_fused == 1 and not after.arrived  # holds still for fresh looks


def test_making_the_direct_move_under_the_imagine_planner_drops_the_looks_that_chose_it():
    session = GuidanceSession(KnownPredictor(move_gain=0.8), SessionSettings(history=2, planner="imagine"))
    pose = np.array([40.0, 0, 0, 0, 0, 0])
    for move in (None, np.zeros(6), np.zeros(6)):
        session.update(pose, executed_move=move)
    after = session.update(np.zeros(6), executed_move=-pose)  # the inverse of the estimate, not the suggestion
    assert after.frames_fused == 1 and not after.move.any()


def test_making_the_imagine_planners_move_drops_the_looks_that_chose_it():
    # The world model believes moves fall short by 20 %, so it suggests 1.25x the inverse of the estimate: not
    # the inverse, yet the move the looks chose. Once made, those looks must not judge it: hold still and look again.
    session = GuidanceSession(KnownPredictor(move_gain=0.8), SessionSettings(history=2, planner="imagine"))
    pose = np.array([40.0, 0, 0, 0, 0, 0])  # far: the move lands 10 mm past the view, outside "arrived"
    session.update(pose)
    session.update(pose, executed_move=np.zeros(6))
    chosen = session.update(pose, executed_move=np.zeros(6))
    np.testing.assert_allclose(chosen.move, -1.25 * pose)
    after = session.update(pose + chosen.move, executed_move=chosen.move)
    assert after.frames_fused == 1 and not after.move.any()


@pytest.fixture(scope="module")
def tiny_checkpoint(phantom_dir, tmp_path_factory) -> Path:
    return save_tiny_checkpoint(tmp_path_factory.mktemp("run") / "best.ckpt", phantom_dir)


@pytest.mark.parametrize("planner", ["direct", "imagine"])
def test_a_session_on_a_checkpoint_guides_from_phantom_frames(tiny_checkpoint, phantom_dir, planner):
    frames = sorted((phantom_dir / "phantom_04" / "ft1").glob("*.png"))[:2]
    session = GuidanceSession(load_model(tiny_checkpoint, device="cpu"), SessionSettings(history=2, planner=planner))
    session.update(frames[0])
    guidance = session.update(frames[1], executed_move=[1.0, 0, 0, 0, 0, 2.0])
    assert guidance.pose.shape == guidance.move.shape == (6,)
    assert np.isfinite(guidance.move).all() and guidance.frames_fused == 2


def test_the_imagine_planner_encodes_each_frame_once(tiny_checkpoint, phantom_dir):
    frames = sorted((phantom_dir / "phantom_04" / "ft1").glob("*.png"))[:2]
    predictor = load_model(tiny_checkpoint, device="cpu")
    images_encoded = []
    predictor.model.backbone.register_forward_hook(lambda module, inputs, output: images_encoded.append(len(output)))
    session = GuidanceSession(predictor, SessionSettings(history=0, planner="imagine"))
    session.update(frames[0])
    session.update(frames[1], executed_move=[1.0, 0, 0, 0, 0, 2.0])
    assert images_encoded == [1, 1]  # the estimate and every candidate move from one pass per frame


def test_imagining_from_one_encoding_matches_imagining_from_the_image(tiny_checkpoint, phantom_dir):
    frame = sorted((phantom_dir / "phantom_04" / "ft1").glob("*.png"))[0]
    predictor = load_model(tiny_checkpoint, device="cpu")
    moves = np.random.default_rng(0).uniform(-8, 8, (5, 6))
    look = predictor.look(frame)
    np.testing.assert_allclose(look.pose, predictor.predict(frame), atol=1e-5)
    # one encoding against five (another batch size sums in another order): fp32's last digits of poses ~100 deg
    np.testing.assert_allclose(look.imagine(moves), predictor.predict([frame] * 5, moves), rtol=1e-5, atol=1e-4)


def test_from_checkpoint_refuses_a_bad_setting_before_loading_the_model(tmp_path):
    with pytest.raises(ConfigError, match="history"):  # not the missing file: the settings are checked first
        GuidanceSession.from_checkpoint(tmp_path / "absent.ckpt", device="cpu", history=-1)


def test_from_checkpoint_builds_the_same_session_as_the_predictor(tiny_checkpoint):
    session = GuidanceSession.from_checkpoint(tiny_checkpoint, device="cpu", history=3, arrival_mm=2.0)
    assert session.settings == SessionSettings(history=3, arrival_mm=2.0)
    assert session.composition == "additive"
    assert session.predictor.precision.name == "32"  # evaluation's figures, unless asked otherwise


def test_a_bf16_session_suggests_moves_near_the_fp32_ones(monkeypatch, tiny_checkpoint, phantom_dir):
    monkeypatch.setattr(devices, "cpu_supports_bf16", lambda: True)  # the bf16 path on any test machine
    frames = sorted((phantom_dir / "phantom_04" / "ft1").glob("*.png"))[:3]
    moves = []
    for precision in ("32", "bf16"):
        session = GuidanceSession.from_checkpoint(tiny_checkpoint, device="cpu", precision=precision)
        assert session.predictor.precision.name == precision
        moves.append([session.update(frame, executed_move=None if i == 0 else np.zeros(6)).move
                      for i, frame in enumerate(frames)])
    np.testing.assert_allclose(moves[1], moves[0], rtol=0.05, atol=0.05)


def test_importing_inference_loads_neither_matplotlib_nor_the_trainer():
    code = ("import sys, cardiac_dreamer, cardiac_dreamer.guidance.session, cardiac_dreamer.evaluation.predictor; "
            "from cardiac_dreamer.evaluation import evaluate; "
            "assert cardiac_dreamer.GuidanceSession is cardiac_dreamer.guidance.session.GuidanceSession; "
            "print(sorted(m for m in sys.modules if m.startswith(('matplotlib', 'cardiac_dreamer.training', "
            "'cardiac_dreamer.pipeline', 'tensorboard'))))")
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120,
                            env={"PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "PATH": ""})
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
