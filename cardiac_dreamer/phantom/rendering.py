"""Slice a phantom volume through an ultrasound sector at a 6-DOF probe pose.

Why a module of its own: rendering is the hot path (the generator calls it once per frame, a closed-loop simulator
once per step), so the sector grid is built once per image size and only the sector's pixels are sampled.

Two looks: v3 (a 90-degree fan whose square image shows the whole fan, half the pixels black, mild Gaussian
speckle) and v4 (the fan of a real export: the square crops the fan's sides so ~27 % of the pixels are black;
Rayleigh speckle grains, the patient's gain, contrast and attenuation, a beating heart and a breathing shift, and a
chest wall that follows the probe's face).
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F

from ..geometry import pose_to_matrix
from .anatomy import VOLUME_MAX_MM, VOLUME_MIN_MM
from .people import Traits, breathing_shift_mm, contraction

DEPTH_MM = 160.0  # imaging depth of the sector
SECTOR_HALF_ANGLE_DEG = 45.0
ATTENUATION_MM = 90.0  # v3: depth over which the uncompensated part of the echo falls by e
COMPENSATED_GAIN = 0.35  # share of the echo that time-gain compensation keeps at any depth
SPECKLE_STD = 0.15  # v3: per-frame multiplicative speckle, drawn afresh for every frame
DISPLAY_GAMMA = 0.8  # v3: log-like compression of the display
V4_WIDTH_MM = 150.0  # v4: the image shows 150 mm of the fan's width, so its sides fall outside the square
V4_SPECKLE = 0.8  # v4: share of fully developed (Rayleigh) speckle in the echo
SPECKLE_GRAIN_PX_AT = 100  # v4: speckle grains are one pixel wide per this many pixels of image width, laterally


@dataclass(frozen=True)
class SectorGrid:
    """The pixels inside the sector for one image size: where they sit in the probe frame and their depth."""

    image_size: int
    pixel_index: np.ndarray  # [N] flat indices into the [S, S] image
    points_mm: np.ndarray  # [N, 3] float64 (lateral, elevation = 0, depth) in the probe frame
    distance_mm: np.ndarray  # [N] float64 from the probe

    @functools.cached_property
    def v3_gain(self) -> np.ndarray:
        """``[N]`` v3's depth attenuation, partly compensated."""
        return (COMPENSATED_GAIN + (1.0 - COMPENSATED_GAIN) * np.exp(-self.distance_mm / ATTENUATION_MM)).astype(
            np.float32)


@functools.lru_cache(maxsize=16)
def sector_grid(image_size: int, width_mm: Optional[float] = None) -> SectorGrid:
    """Rows are depth, columns lateral; only pixels within the fan are kept. ``width_mm`` is the lateral extent
    of the image (None: the fan's full width, v3)."""
    if width_mm is None:
        width_mm = 2.0 * DEPTH_MM * np.sin(np.deg2rad(SECTOR_HALF_ANGLE_DEG))
    depth_axis = (np.arange(image_size) + 0.5) / image_size * DEPTH_MM
    lateral_axis = ((np.arange(image_size) + 0.5) / image_size - 0.5) * width_mm
    depth, lateral = np.meshgrid(depth_axis, lateral_axis, indexing="ij")  # [S, S] each
    distance = np.hypot(lateral, depth)
    angle_deg = np.degrees(np.arctan2(np.abs(lateral), depth))
    inside = ((distance <= DEPTH_MM) & (angle_deg <= SECTOR_HALF_ANGLE_DEG)).ravel()
    points = np.stack([lateral.ravel(), np.zeros(inside.size), depth.ravel()], -1)[inside]  # [N, 3]
    return SectorGrid(image_size, np.flatnonzero(inside), points, distance.ravel()[inside])


def sample_sector(
    volume: torch.Tensor, box_mm: Tuple[np.ndarray, np.ndarray], probe: np.ndarray, points_mm: np.ndarray,
) -> np.ndarray:
    """The echo of each volume ``[V, 1, Z, Y, X]`` at probe-frame ``points_mm`` ``[N, 3]`` for the ``probe``
    matrix (heart frame): ``[V, N]``. Points outside ``box_mm`` take the value at its border."""
    low, high = box_mm
    span = high - low
    # heart-frame mm -> grid_sample's [-1, 1] box in one affine map: normalized = points @ A + b
    scale = probe[:3, :3].T * (2.0 / span)
    offset = (probe[:3, 3] - low) * (2.0 / span) - 1.0
    normalized = torch.from_numpy((points_mm @ scale + offset).astype(np.float32))  # [N, 3] (x, y, z)
    count = volume.shape[0]
    echo = F.grid_sample(
        volume, normalized.view(1, 1, 1, -1, 3).expand(count, -1, -1, -1, -1), mode="bilinear",
        padding_mode="border", align_corners=True,
    )  # [V, 1, 1, 1, N]
    return echo.view(count, -1).numpy()


def render_slice(
    volume: torch.Tensor, target: np.ndarray, pose: Sequence[float], image_size: int,
    rng: Optional[np.random.Generator],
) -> np.ndarray:
    """v3: the B-mode frame at ``pose`` (relative to the ``target`` probe matrix, heart frame): ``[S, S]`` uint8.

    ``volume`` is ``[1, 1, Z, Y, X]`` over the box ``VOLUME_MIN_MM..VOLUME_MAX_MM``; points outside the box take
    the value at its border. Speckle comes from ``rng`` (a fresh unseeded draw when None).
    """
    grid = sector_grid(image_size)
    probe = target @ pose_to_matrix(torch.as_tensor(pose, dtype=torch.float64)).numpy()  # [4, 4] heart frame
    echo = sample_sector(volume, (VOLUME_MIN_MM, VOLUME_MAX_MM), probe, grid.points_mm)[0]
    rng = np.random.default_rng() if rng is None else rng
    speckle = 1.0 + SPECKLE_STD * rng.standard_normal(echo.size, dtype=np.float32)
    shown = np.clip(echo * grid.v3_gain * speckle, 0.0, 1.0) ** DISPLAY_GAMMA
    image = np.zeros(image_size * image_size, dtype=np.uint8)
    image[grid.pixel_index] = np.round(shown * 255.0).astype(np.uint8)
    return image.reshape(image_size, image_size)


def render_beating(
    volumes: torch.Tensor, box_mm: Tuple[np.ndarray, np.ndarray], target: np.ndarray, traits: Traits,
    pose: Sequence[float], image_size: int, rng: np.random.Generator, cycle: Tuple[float, float],
    wall: torch.Tensor, wall_box_mm: Tuple[np.ndarray, np.ndarray],
) -> np.ndarray:
    """v4: the frame at ``pose`` at ``cycle`` = (cardiac, breathing) phase: ``[S, S]`` uint8, black outside the fan.

    ``volumes`` ``[2, 1, Z, Y, X]`` are end-diastole and end-systole; the frame blends their echoes by the
    contraction. Breathing moves the heart against the probe, so the image moves although the pose does not. Where
    the chest wall ``wall`` lies, the frame shows it (``[2, 1, Z, Y, X]``: echo, and the wall's share of it) under
    the probe's face.
    """
    grid = sector_grid(image_size, V4_WIDTH_MM)
    probe = target @ pose_to_matrix(torch.as_tensor(pose, dtype=torch.float64)).numpy()  # [4, 4] heart frame
    wall_echo, wall_share = sample_sector(wall, wall_box_mm, _face_down(probe), grid.points_mm)  # [N] each
    probe[:3, 3] -= breathing_shift_mm(cycle[1], traits)
    diastole, systole = sample_sector(volumes, box_mm, probe, grid.points_mm)  # [N] each
    squeeze = contraction(cycle[0])
    echo = (1.0 - squeeze) * diastole + squeeze * systole
    echo = wall_share * wall_echo + (1.0 - wall_share) * echo
    kept = COMPENSATED_GAIN + (1.0 - COMPENSATED_GAIN) * np.exp(-grid.distance_mm / traits.attenuation_mm)
    gain = (traits.gain * kept).astype(np.float32)
    shown = np.clip(echo * gain * _speckle(rng, image_size)[grid.pixel_index], 0.0, 1.0) ** traits.contrast
    image = np.zeros(image_size * image_size, dtype=np.uint8)
    image[grid.pixel_index] = np.round(shown * 255.0).astype(np.uint8)
    return image.reshape(image_size, image_size)


def _face_down(probe: np.ndarray) -> np.ndarray:
    """The probe at the same place and turned the same way about the beam, but facing straight in: the chest wall
    under a tilted probe, whose face stays on the skin and whose near field follows it."""
    lateral = probe[:2, 0]
    length = float(np.hypot(*lateral))
    cos, sin = lateral / length if length > 1e-6 else (1.0, 0.0)  # a beam lying flat on the skin: no turn to read
    upright = np.eye(4)
    upright[:2, :2] = [[cos, -sin], [sin, cos]]
    upright[:3, 3] = probe[:3, 3]
    return upright


def _speckle(rng: np.random.Generator, image_size: int) -> np.ndarray:
    """``[S * S]`` float32 of mean 1: Rayleigh amplitudes in grains wider than tall, as a phased array shows them."""
    grain = 1 + image_size // SPECKLE_GRAIN_PX_AT
    width = image_size + grain - 1
    rayleigh = rng.rayleigh(np.sqrt(2.0 / np.pi), (image_size, width)).astype(np.float32)  # mean 1
    if grain > 1:  # a running mean along each row: [S, S + g - 1] -> [S, S]
        cumulative = np.concatenate([np.zeros((image_size, 1), np.float32), np.cumsum(rayleigh, 1)], 1)
        rayleigh = (cumulative[:, grain:] - cumulative[:, :-grain]) / grain
    return (1.0 - V4_SPECKLE + V4_SPECKLE * rayleigh).ravel()
