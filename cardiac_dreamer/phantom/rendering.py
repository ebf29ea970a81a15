"""Slice a phantom volume through an ultrasound sector at a 6-DOF probe pose.

Why a module of its own: rendering is the hot path (the generator calls it once per frame, a closed-loop simulator
once per step), so the sector grid is built once per image size and only the sector's pixels are sampled.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ..geometry import pose_to_matrix
from .anatomy import VOLUME_MAX_MM, VOLUME_MIN_MM

DEPTH_MM = 160.0  # imaging depth of the sector
SECTOR_HALF_ANGLE_DEG = 45.0
ATTENUATION_MM = 90.0  # depth over which the uncompensated part of the echo falls by e
COMPENSATED_GAIN = 0.35  # share of the echo that time-gain compensation keeps at any depth
SPECKLE_STD = 0.15  # per-frame multiplicative speckle, drawn afresh for every frame
DISPLAY_GAMMA = 0.8  # log-like compression of the display


@dataclass(frozen=True)
class SectorGrid:
    """The pixels inside the sector for one image size: where they sit in the probe frame and their gain."""

    image_size: int
    pixel_index: np.ndarray  # [N] flat indices into the [S, S] image
    points_mm: np.ndarray  # [N, 3] float64 (lateral, elevation = 0, depth) in the probe frame
    gain: np.ndarray  # [N] float32 depth attenuation, partly compensated


@functools.lru_cache(maxsize=8)
def sector_grid(image_size: int) -> SectorGrid:
    """Rows are depth, columns lateral; only pixels within the fan are kept (about half of the square)."""
    half_width = DEPTH_MM * np.sin(np.deg2rad(SECTOR_HALF_ANGLE_DEG))
    depth_axis = (np.arange(image_size) + 0.5) / image_size * DEPTH_MM
    lateral_axis = ((np.arange(image_size) + 0.5) / image_size * 2.0 - 1.0) * half_width
    depth, lateral = np.meshgrid(depth_axis, lateral_axis, indexing="ij")  # [S, S] each
    distance = np.hypot(lateral, depth)
    angle_deg = np.degrees(np.arctan2(np.abs(lateral), depth))
    inside = ((distance <= DEPTH_MM) & (angle_deg <= SECTOR_HALF_ANGLE_DEG)).ravel()
    points = np.stack([lateral.ravel(), np.zeros(inside.size), depth.ravel()], -1)[inside]  # [N, 3]
    gain = COMPENSATED_GAIN + (1.0 - COMPENSATED_GAIN) * np.exp(-distance.ravel()[inside] / ATTENUATION_MM)
    return SectorGrid(image_size, np.flatnonzero(inside), points, gain.astype(np.float32))


def render_slice(
    volume: torch.Tensor, target: np.ndarray, pose: Sequence[float], image_size: int,
    rng: Optional[np.random.Generator],
) -> np.ndarray:
    """The B-mode frame at ``pose`` (relative to the ``target`` probe matrix, heart frame): ``[S, S]`` uint8.

    ``volume`` is ``[1, 1, Z, Y, X]`` over the box ``VOLUME_MIN_MM..VOLUME_MAX_MM``; points outside the box take
    the value at its border. Speckle comes from ``rng`` (a fresh unseeded draw when None).
    """
    grid = sector_grid(image_size)
    probe = target @ pose_to_matrix(torch.as_tensor(pose, dtype=torch.float64)).numpy()  # [4, 4] heart frame
    span = VOLUME_MAX_MM - VOLUME_MIN_MM
    # heart-frame mm -> grid_sample's [-1, 1] box in one affine map: normalized = points @ A + b
    scale = probe[:3, :3].T * (2.0 / span)
    offset = (probe[:3, 3] - VOLUME_MIN_MM) * (2.0 / span) - 1.0
    normalized = torch.from_numpy((grid.points_mm @ scale + offset).astype(np.float32))  # [N, 3] (x, y, z)
    echo = F.grid_sample(
        volume, normalized.view(1, 1, 1, -1, 3), mode="bilinear", padding_mode="border", align_corners=True
    ).view(-1).numpy()  # [1, 1, 1, 1, N] -> [N]
    rng = np.random.default_rng() if rng is None else rng
    speckle = 1.0 + SPECKLE_STD * rng.standard_normal(echo.size, dtype=np.float32)
    shown = np.clip(echo * grid.gain * speckle, 0.0, 1.0) ** DISPLAY_GAMMA
    image = np.zeros(image_size * image_size, dtype=np.uint8)
    image[grid.pixel_index] = np.round(shown * 255.0).astype(np.uint8)
    return image.reshape(image_size, image_size)
