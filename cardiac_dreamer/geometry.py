"""6-DOF probe poses in physical units: ``[x, y, z, roll, pitch, yaw]`` in millimetres and degrees.

Two ways a move relates the poses at t1 and t2, so the model's composition can match the data:

* ``additive``: ``at2 = at1 + move`` per component (what the real exports contain);
* ``se3``: ``T(at2) = T(at1) @ T(move)``, the move expressed in the probe frame at t1.

Rotation matrices use ``R = Rz(yaw) @ Ry(pitch) @ Rx(roll)``.
"""
from __future__ import annotations

from typing import Any, Optional

import numpy as np
import torch

from .config import COMPOSITION_MODES, check_choice
from .errors import DataError
from .names import AXIS_NAMES, AXIS_UNITS

# No probe pose or move is a kilometre or a thousand turns: a larger label or move is an export or tracker error, and
# its square (in the normalization statistics, in a fused estimate) would swamp every other.
MAX_POSE_MAGNITUDE = 1e6  # mm or degrees
MIN_RESULTANT = 0.05  # mean unit vector of an axis's angles shorter than this: spread all round, no centre


def pose_to_matrix(pose: torch.Tensor) -> torch.Tensor:
    """``[..., 6]`` (mm, degrees) -> homogeneous ``[..., 4, 4]``."""
    translation = pose[..., :3]
    roll, pitch, yaw = torch.deg2rad(pose[..., 3:]).unbind(-1)
    cr, sr = torch.cos(roll), torch.sin(roll)
    cp, sp = torch.cos(pitch), torch.sin(pitch)
    cy, sy = torch.cos(yaw), torch.sin(yaw)
    rotation = torch.stack(
        [
            torch.stack([cy * cp, cy * sp * sr - sy * cr, cy * sp * cr + sy * sr], -1),
            torch.stack([sy * cp, sy * sp * sr + cy * cr, sy * sp * cr - cy * sr], -1),
            torch.stack([-sp, cp * sr, cp * cr], -1),
        ],
        -2,
    )
    matrix = torch.zeros(pose.shape[:-1] + (4, 4), dtype=pose.dtype, device=pose.device)
    matrix[..., :3, :3] = rotation
    matrix[..., :3, 3] = translation
    matrix[..., 3, 3] = 1.0
    return matrix


def matrix_to_pose(matrix: torch.Tensor) -> torch.Tensor:
    """Homogeneous ``[..., 4, 4]`` -> ``[..., 6]`` (mm, degrees); pitch in [-90, 90]."""
    rotation = matrix[..., :3, :3]
    pitch = torch.asin(torch.clamp(-rotation[..., 2, 0], -1.0, 1.0))
    roll = torch.atan2(rotation[..., 2, 1], rotation[..., 2, 2])
    yaw = torch.atan2(rotation[..., 1, 0], rotation[..., 0, 0])
    angles = torch.rad2deg(torch.stack([roll, pitch, yaw], -1))
    return torch.cat([matrix[..., :3, 3], angles], -1)


def apply_move(pose: torch.Tensor, move: torch.Tensor, mode: str = "additive") -> torch.Tensor:
    """The pose after ``move``: at2 from at1."""
    check_composition(mode)
    if mode == "additive":
        return pose + move
    return matrix_to_pose(pose_to_matrix(pose) @ pose_to_matrix(move))


def undo_move(pose_after: torch.Tensor, move: torch.Tensor, mode: str = "additive") -> torch.Tensor:
    """The pose before ``move``: at1 from at2, the exact inverse of :func:`apply_move`."""
    check_composition(mode)
    if mode == "additive":
        return pose_after - move
    return matrix_to_pose(pose_to_matrix(pose_after) @ torch.linalg.inv(pose_to_matrix(move)))


def move_between(pose_from: torch.Tensor, pose_to: torch.Tensor, mode: str = "additive") -> torch.Tensor:
    """The move that takes ``pose_from`` to ``pose_to``: ``apply_move(pose_from, move) == pose_to`` up to whole
    turns, angles the short way round (179 to -179 deg is a move of 2, not -358), as in ``se3``."""
    check_composition(mode)
    if mode == "additive":
        return pose_error(pose_from, pose_to)
    return matrix_to_pose(torch.linalg.inv(pose_to_matrix(pose_from)) @ pose_to_matrix(pose_to))


def wrap_degrees(angles: torch.Tensor) -> torch.Tensor:
    """Angles folded into [-180, 180): residuals of 359.9 and -0.1 degrees are the same small error. Angles already
    there are returned bit for bit (the fold's arithmetic would round 3.7 to 3.6999999999999886)."""
    folded = torch.remainder(angles + 180.0, 360.0) - 180.0
    folded = torch.where(folded >= 180.0, folded - 360.0, folded)  # float32 -180.00001 rounds up to 180
    return torch.where((angles >= -180.0) & (angles < 180.0), angles, folded)


def folded_poses(poses) -> np.ndarray:
    """A float64 copy of poses ``[..., 6]`` (array-like) with their angles folded into [-180, 180)."""
    poses = np.array(poses, dtype=np.float64)
    poses[..., 3:] = wrap_degrees(torch.from_numpy(poses[..., 3:])).numpy()
    return poses


def unwrapped_poses(poses, around=None) -> np.ndarray:
    """A float64 copy of poses ``[N, 6]`` with each angle moved by whole turns to within 180 deg of ``around`` (a
    pose ``[6]``, or ``[N, 6]``: one per row; by default the circular mean of the poses' own angles).

    Why: labels of 179 and -179 deg are neighbours, but a mean, a standard deviation or a regression reads them 358
    deg apart. Unwrapped (to 179 and 181) they are numbers again, as poses relative to a view, which lie within 180
    deg of their centre, can always be. Angles already within 180 deg of the centre are kept bit for bit; an axis
    whose angles spread all round the circle has no centre, and keeps its angles as they are.
    """
    poses = np.array(poses, dtype=np.float64).reshape(-1, 6)
    if around is None:
        radians = np.radians(poses[:, 3:])
        mean_sin, mean_cos = np.sin(radians).mean(0), np.cos(radians).mean(0)  # [3] each
        centre = np.where(np.hypot(mean_sin, mean_cos) < MIN_RESULTANT, 0.0,
                          np.degrees(np.arctan2(mean_sin, mean_cos)))
    else:
        centre = np.asarray(around, dtype=np.float64)[..., 3:]
    poses[:, 3:] -= 360.0 * np.floor((poses[:, 3:] - centre + 180.0) / 360.0)  # whole turns: 0 for those near it
    return poses


def mean_pose(poses) -> np.ndarray:
    """``[N, 6] -> [6]``: the mean pose, angles averaged on the circle (:func:`unwrapped_poses`, then folded into
    [-180, 180)): labels of 179 and -179 deg average to -180, not 0."""
    return folded_poses(unwrapped_poses(poses).mean(0))


def pose_error(expected: torch.Tensor, actual: torch.Tensor) -> torch.Tensor:
    """Signed per-component error ``actual - expected`` in mm and degrees, angles folded into [-180, 180)."""
    diff = actual - expected
    return torch.cat([diff[..., :3], wrap_degrees(diff[..., 3:])], -1)


def as_moves(values: Any, count: Optional[int] = None, what: str = "moves") -> torch.Tensor:
    """Moves in mm and degrees as float64 from a list, array or tensor: ``[6]`` when ``count`` is None, else
    ``[count, 6]``, where one ``[6]`` move serves every row. Anything else is one :class:`DataError` naming
    ``what``: a user's move is input, refused like a user's image."""
    if isinstance(values, torch.Tensor):
        if values.is_meta or values.layout != torch.strided:
            raise DataError(f"{what} must be a dense tensor of numbers (mm, degrees); got a "
                            f"{'meta' if values.is_meta else values.layout} tensor")
        values = values.detach().cpu().double()
    try:  # text ("1.5" from a CSV read as strings), booleans and complex numbers are not moves, though numpy would
        # convert them
        moves = None if np.asarray(values).dtype.kind in "USbc" else np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        moves = None
    if moves is not None and count is None and moves.shape == (1, 6):  # one row, as a batch of one holds it
        moves = moves.reshape(6)
    elif moves is not None and count is not None and moves.shape == (6,):
        moves = np.broadcast_to(moves, (count, 6))
    wanted = (6,) if count is None else (count, 6)
    if moves is None or moves.shape != wanted or not (np.abs(moves) <= MAX_POSE_MAGNITUDE).all():
        form = "6 finite numbers" if count is None else f"finite numbers, [6] or [{count}, 6] (one per image),"
        got = repr(values) if moves is None or moves.ndim == 0 else (
            f"shape {list(moves.shape)}" if moves.shape != wanted else
            "NaN or infinity" if not np.isfinite(moves).all() else f"{moves.flat[np.abs(moves).argmax()]:g}")
        raise DataError(f"{what} must be {form} (mm, degrees) within +-{MAX_POSE_MAGNITUDE:g}; got {got}")
    return torch.from_numpy(np.array(moves))


def check_composition(mode: str) -> None:
    """ConfigError (a ValueError) unless ``mode`` is one of :data:`COMPOSITION_MODES`."""
    check_choice("composition mode", mode, COMPOSITION_MODES)


__all__ = [
    "AXIS_NAMES",
    "as_moves",
    "AXIS_UNITS",
    "COMPOSITION_MODES",
    "MAX_POSE_MAGNITUDE",
    "apply_move",
    "matrix_to_pose",
    "mean_pose",
    "move_between",
    "pose_error",
    "pose_to_matrix",
    "undo_move",
    "unwrapped_poses",
    "wrap_degrees",
]
