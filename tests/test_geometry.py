"""geometry: moves between probe poses, additive and SE(3), and their exact inverses."""
import numpy as np
import pytest
import torch

from cardiac_dreamer.geometry import (
    apply_move, matrix_to_pose, move_between, pose_error, pose_to_matrix, undo_move, unwrapped_poses, wrap_degrees,
)


def random_poses(count: int, seed: int, max_angle: float = 60.0) -> torch.Tensor:
    """[count, 6] poses in float64: translations up to +-50 mm, angles up to +-max_angle degrees."""
    generator = torch.Generator().manual_seed(seed)
    unit = torch.rand(count, 6, generator=generator, dtype=torch.float64) * 2 - 1
    return unit * torch.tensor([50.0, 50.0, 50.0, max_angle, max_angle, max_angle], dtype=torch.float64)


@pytest.mark.parametrize("mode", ["additive", "se3"])
def test_undo_move_inverts_apply_move(mode):
    at1, move = random_poses(256, seed=0), random_poses(256, seed=1)
    recovered = undo_move(apply_move(at1, move, mode), move, mode)
    assert pose_error(at1, recovered).abs().max() < 1e-9


@pytest.mark.parametrize("mode", ["additive", "se3"])
def test_apply_move_inverts_undo_move(mode):
    at2, move = random_poses(256, seed=2), random_poses(256, seed=3)
    recovered = apply_move(undo_move(at2, move, mode), move, mode)
    assert pose_error(at2, recovered).abs().max() < 1e-9


def test_matrix_to_pose_inverts_pose_to_matrix():
    poses = random_poses(256, seed=4, max_angle=85.0)  # pitch stays clear of the +-90 degree singularity
    assert torch.allclose(matrix_to_pose(pose_to_matrix(poses)), poses, atol=1e-9)


def test_pose_to_matrix_gives_a_rigid_transform():
    matrix = pose_to_matrix(random_poses(64, seed=5))
    rotation = matrix[:, :3, :3]
    identity = torch.eye(3, dtype=torch.float64).expand_as(rotation)
    assert torch.allclose(rotation @ rotation.transpose(1, 2), identity, atol=1e-12)
    assert torch.allclose(torch.linalg.det(rotation), torch.ones(64, dtype=torch.float64))
    assert torch.equal(matrix[:, 3], torch.tensor([0.0, 0.0, 0.0, 1.0], dtype=torch.float64).expand(64, 4))


def test_rotation_order_is_yaw_pitch_roll():
    yaw_90 = pose_to_matrix(torch.tensor([0.0, 0.0, 0.0, 0.0, 0.0, 90.0], dtype=torch.float64))
    x_axis = torch.tensor([1.0, 0.0, 0.0], dtype=torch.float64)
    assert torch.allclose(yaw_90[:3, :3] @ x_axis, torch.tensor([0.0, 1.0, 0.0], dtype=torch.float64), atol=1e-12)


def test_additive_labels_round_trip_through_undo_move():
    at1, move = random_poses(128, seed=6), random_poses(128, seed=7)
    at2 = at1 + move  # how the real exports are written
    assert torch.allclose(undo_move(at2, move, "additive"), at1, atol=1e-12)


def test_se3_labels_round_trip_through_undo_move():
    at1, move = random_poses(128, seed=8), random_poses(128, seed=9)
    at2 = apply_move(at1, move, "se3")  # T(at2) = T(at1) @ T(move)
    assert pose_error(at1, undo_move(at2, move, "se3")).abs().max() < 1e-9


WRONG_ORDERS = {
    "move_inverse_on_the_left": lambda at2, move: torch.linalg.inv(move) @ at2,
    "move_composed_on_the_left": lambda at2, move: move @ at2,  # the public implementation's T(move) @ T(at2)
}


@pytest.mark.parametrize("wrong_order", sorted(WRONG_ORDERS))
def test_se3_composition_order_matters(wrong_order):
    """Only T(at2) @ T(move)^-1 recovers at1; composing on the other side misses it for every sample."""
    at1, move = random_poses(128, seed=10), random_poses(128, seed=11)
    at2 = apply_move(at1, move, "se3")
    wrong = matrix_to_pose(WRONG_ORDERS[wrong_order](pose_to_matrix(at2), pose_to_matrix(move)))
    assert pose_error(at1, wrong).abs().amax(dim=-1).min() > 1e-3
    assert pose_error(at1, undo_move(at2, move, "se3")).abs().max() < 1e-9


def test_se3_matches_additive_for_pure_translation_moves():
    at1 = random_poses(64, seed=12)
    move = torch.zeros(64, 6, dtype=torch.float64)
    move[:, :3] = random_poses(64, seed=13)[:, :3]
    at1[:, 3:] = 0.0  # with no rotation at t1 the probe frame is the world frame
    assert torch.allclose(apply_move(at1, move, "se3"), apply_move(at1, move, "additive"), atol=1e-9)


def test_unknown_mode_is_rejected():
    pose = torch.zeros(6)
    with pytest.raises(ValueError, match="composition mode"):
        undo_move(pose, pose, "euler")


def test_angles_already_in_range_are_not_rounded_by_the_fold():
    angles = torch.tensor([3.7, -179.9, 179.99, -180.0], dtype=torch.float64)
    assert torch.equal(wrap_degrees(angles), angles)  # the fold's arithmetic gave 3.6999999999999886
    assert wrap_degrees(torch.tensor([180.0, 359.0, -181.0, 725.0], dtype=torch.float64)).tolist() == \
        [-180.0, -1.0, 179.0, 5.0]


def test_a_float32_angle_just_below_minus_180_folds_into_range():
    assert wrap_degrees(torch.tensor([-180.00001], dtype=torch.float32)).item() == -180.0  # not +180


def test_an_additive_move_between_poses_either_side_of_180_degrees_is_short():
    move = move_between(torch.tensor([0.0, 0, 0, 179.0, 0, 0]), torch.tensor([1.0, 0, 0, -179.0, 0, 0]))
    assert move.tolist() == pytest.approx([1.0, 0, 0, 2.0, 0, 0])  # as se3 reads it, not -358


def test_angles_spread_all_round_the_circle_are_kept_as_they_are():
    # Their circular mean is rounding noise: unwrapping around it would move the window by tens of degrees when one
    # label moves by a billionth of a degree.
    poses = np.zeros((360, 6))
    poses[:, 3] = np.arange(-180.0, 180.0)
    nudged = poses.copy()
    nudged[0, 3] += 1e-9
    assert unwrapped_poses(poses)[:, 3].tolist() == poses[:, 3].tolist()
    assert unwrapped_poses(nudged)[:, 3].tolist() == nudged[:, 3].tolist()


def test_labels_either_side_of_180_degrees_are_unwrapped_into_neighbours():
    poses = torch.zeros(4, 6, dtype=torch.float64)
    poses[:, 0], poses[:, 3], poses[:, 5] = torch.tensor([1.0, 2, 3, 4]), torch.tensor([179.0, -179, 178, -177]), \
        torch.tensor([10.0, 20, 30, 40])
    unwrapped = unwrapped_poses(poses.numpy())  # roll's circular mean is -179.5: 179 and 178 move a turn down
    assert unwrapped[:, 3] == pytest.approx([-181.0, -179.0, -182.0, -177.0])
    assert unwrapped[[1, 3], 3].tolist() == [-179.0, -177.0]  # those near the centre are kept bit for bit
    assert unwrapped[:, [0, 1, 2, 4, 5]].tolist() == poses[:, [0, 1, 2, 4, 5]].tolist()
    around = unwrapped_poses([[0, 0, 0, 10.0, 0, 0]], around=[0, 0, 0, -170.0, 0, 0])
    assert around[0, 3] == -350.0  # within 180 deg of the given centre
