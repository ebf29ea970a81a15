"""The heart phantom's anatomy: soft-edged, possibly tapered ellipsoids painted into a voxel volume.

Heart frame, in mm: x lateral (the LV side is +x, the right of the image), y posterior (the probe's elevation at
the target view), z from the apex to the base (the probe's depth, less the standoff).

Why it looks the way it does: a probe moving out of plane (y, roll, yaw) must change the image gradually and
monotonically, or no model (and no linear probe) can read those axes. So the chambers are long in elevation (the
plane seldom reaches their ends, where they would vanish), and each changes along elevation in its own way: the
ventricles widen posteriorly and lean in depth (the LV deepens, the RV rises), the atria widen anteriorly and slide
apart; the chest wall above the apex deepens posteriorly; echogenicity rises posteriorly. A structure's change
follows the elevation offset where it sits, ``y - depth * roll + lateral * yaw`` (small angles, in radians), so y
shows near the probe, roll grows with depth and yaw with the distance from the centre line.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

from ..geometry import pose_to_matrix

VOXEL_MM = 2.0
# the box holds every sector within 25 mm / 25 degrees of the target view (beyond it, rendering clamps at the border)
VOLUME_MIN_MM = np.array([-180.0, -136.0, -52.0])
VOLUME_MAX_MM = np.array([180.0, 136.0, 166.0])
PROBE_STANDOFF_MM = 25.0  # from the target probe position to the apex: the chest wall
EDGE_MM = 2.5  # width of a structure's soft edge
MIN_WIDENING = 0.05  # a tapered section shrinks to this fraction, never to nothing
TEXTURE_STD = 0.10  # static tissue texture: it moves with the anatomy, as real speckle does

TISSUE, FAT, CHEST_WALL, MUSCLE, BLOOD, PERICARDIUM, VALVE, LUNG = 0.20, 0.75, 0.50, 0.60, 0.03, 0.90, 0.75, 0.95
ECHO_GRADIENT_PER_MM = 0.005  # echogenicity rises toward posterior: elevation also shows as brightness

CHAMBER_ELEVATION_MM = 70.0  # half-length of the chambers along elevation: no pose reaches their ends
CHAMBER_TAPER = 0.6  # chambers widen or narrow by this fraction over CHAMBER_ELEVATION_MM
CHAMBER_LEAN_DEG = 20.0  # ventricles lean in depth, atria sideways, as elevation changes
CHEST_WALL_LEAN_DEG = 40.0  # the intercostal tissue deepens posteriorly, toward a rib
CHEST_WALL_DEPTH_MM = 32.0  # where the chest wall ends below the target probe position
CHEST_WALL_AXES_MM = (250.0, 250.0, 60.0)


@dataclass(frozen=True)
class Ellipsoid:
    """A soft-edged ellipsoid that paints ``value`` over what lies beneath it (mm, heart frame).

    ``tilt`` (roll, pitch, yaw in degrees, the pose convention) turns its axes away from the heart's, so its section
    slides in plane as the plane moves in elevation. ``taper`` widens the section (its first and third axes) by that
    fraction per ``axes[1]`` of elevation along its own second axis (narrows it when negative), so the section
    grows or shrinks as the plane moves in elevation.
    """

    center: Tuple[float, float, float]
    axes: Tuple[float, float, float]
    value: float
    tilt: Tuple[float, float, float] = (0.0, 0.0, 0.0)
    taper: float = 0.0


def heart_layers(rng: np.random.Generator) -> List[Ellipsoid]:
    """Painting order of the structures, with small per-patient changes of size, shape and position.

    The layout is shared by all patients (a few % of size, ~1 mm and ~2 degrees of jitter), so the pose -> image
    mapping learnt on some patients holds for others. The epicardial fat near the probe, left of the centre line,
    moves with x but hardly with pitch (it is shallow), which tells the two apart; the outflow tract (anterior) and
    the coronary sinus (posterior) appear only on their side of the target view.
    """
    scale = rng.uniform(0.97, 1.03) * rng.uniform(0.98, 1.02, size=3)  # overall size and aspect

    def jitter(layer: Ellipsoid) -> Ellipsoid:
        center = (np.asarray(layer.center, dtype=float) + rng.normal(0.0, 1.0, 3)) * scale
        axes = np.asarray(layer.axes, dtype=float) * scale * rng.uniform(0.98, 1.02, 3)
        # ~2 degrees for a chamber; less for big structures, which the same angle would carry several mm
        tilt_jitter_deg = 2.0 * min(1.0, 40.0 / max(axes))
        tilt = np.asarray(layer.tilt, dtype=float) + rng.normal(0.0, tilt_jitter_deg, 3)
        return replace(layer, center=tuple(center.tolist()), axes=tuple(axes.tolist()), tilt=tuple(tilt.tolist()))

    heart = heart_layout(CHAMBER_ELEVATION_MM, CHAMBER_LEAN_DEG, CHAMBER_TAPER)
    cavities = [jitter(heart[name]) for name in CAVITIES]
    sac = jitter(heart["sac"])
    fat = jitter(Ellipsoid((-45, 0, 5), (40, 150, 50), FAT))  # epicardial fat over the right ventricle, near field
    myocardium = 9.0 * rng.uniform(0.97, 1.03)
    return [
        jitter(Ellipsoid((150, 0, 110), (45, 120, 90), LUNG)),  # the lungs flank the heart outside the sector
        jitter(Ellipsoid((-150, 0, 110), (45, 120, 90), LUNG)),
        sac,
        grown(sac, -3.0, TISSUE),
        fat,
        *heart_walls(cavities, myocardium),
        *cavities,
        *(jitter(heart[name]) for name in INNER_STRUCTURES),
        jitter(Ellipsoid(chest_wall_center(), CHEST_WALL_AXES_MM, CHEST_WALL, (CHEST_WALL_LEAN_DEG, 0, 0))),
    ]


def heart_layout(length: float, lean: float, taper: float) -> Dict[str, Ellipsoid]:
    """The heart's structures in the heart frame (mm, degrees), as v3 and v4 both start from them before a patient
    changes them: chambers ``length`` mm long in elevation, the ventricles leaning ``lean`` degrees in depth and
    the atria sideways, the ventricles' sections widening and the atria's narrowing by ``taper`` over ``length``.
    Both versions' exports change with it: a change here needs a new ``GENERATOR_VERSION``."""
    return {
        "lv": Ellipsoid((20, 0, 58), (19, length, 44), BLOOD, (lean, 0, 0), taper),
        "rv": Ellipsoid((-24, 0, 62), (13, length, 36), BLOOD, (-lean, 0, 0), taper),
        "la": Ellipsoid((16, 0, 118), (20, length, 16), BLOOD, (0, 0, -lean), -taper),
        "ra": Ellipsoid((-24, 0, 114), (17, length, 17), BLOOD, (0, 0, lean), -taper),
        "lvot": Ellipsoid((2, -30, 100), (9, 14, 25), BLOOD, (-20, 0, 0)),  # anterior: the five-chamber view
        "coronary_sinus": Ellipsoid((-4, 30, 100), (35, 6, 6), BLOOD),  # posterior, in the atrioventricular groove
        "sac": Ellipsoid((-5, 0, 75), (66, 95, 90), PERICARDIUM),
        "mitral": Ellipsoid((16, 0, 99), (18, length, 2), VALVE),
        "tricuspid": Ellipsoid((-24, 0, 95), (15, length, 2), VALVE),
        "posterior_papillary": Ellipsoid((30, 8, 55), (4, 10, 10), MUSCLE),
        "anterior_papillary": Ellipsoid((24, -8, 62), (4, 10, 10), MUSCLE),
    }


CAVITIES = ("lv", "rv", "la", "ra", "lvot", "coronary_sinus")  # blood, each in a wall of muscle
INNER_STRUCTURES = ("mitral", "tricuspid", "posterior_papillary", "anterior_papillary")  # painted over the blood


def heart_walls(cavities: Sequence[Ellipsoid], myocardium_mm: float) -> List[Ellipsoid]:
    """The muscle around :data:`CAVITIES` (in that order): the left ventricle's ``myocardium_mm`` thick, the right
    ventricle's half that, the rest 3 mm."""
    lv, rv, *others = cavities
    return [grown(lv, myocardium_mm, MUSCLE), grown(rv, 0.5 * myocardium_mm, MUSCLE),
            *(grown(cavity, 3.0, MUSCLE) for cavity in others)]


def grown(layer: Ellipsoid, thickness_mm: float, value: float) -> Ellipsoid:
    """The same shape, ``thickness_mm`` larger on every axis: a wall around a cavity (smaller: a lining)."""
    return replace(layer, axes=tuple(axis + thickness_mm for axis in layer.axes), value=value)


def chest_wall_center() -> Tuple[float, float, float]:
    """Where the leaning chest wall ellipsoid sits so that its lower face is CHEST_WALL_DEPTH_MM below the probe."""
    lean = np.deg2rad(CHEST_WALL_LEAN_DEG)
    a_y, a_z = CHEST_WALL_AXES_MM[1:]
    half_thickness = 1.0 / np.sqrt((np.cos(lean) / a_z) ** 2 + (np.sin(lean) / a_y) ** 2)
    return (0.0, 0.0, CHEST_WALL_DEPTH_MM - PROBE_STANDOFF_MM - half_thickness)


def paint_volume(
    layers: Sequence[Ellipsoid], rng: Optional[np.random.Generator], box_mm: Tuple[np.ndarray, np.ndarray] = (
        VOLUME_MIN_MM, VOLUME_MAX_MM), voxel_mm: float = VOXEL_MM, echo_gradient: float = ECHO_GRADIENT_PER_MM,
    background: float = TISSUE,
) -> torch.Tensor:
    """Paint the layers over ``background`` on a voxel grid over ``box_mm`` (min, max corners) times a static
    texture (none when ``rng`` is None): ``[1, 1, Z, Y, X]`` float32 for grid_sample."""
    x, y, z = (np.arange(lo, hi + voxel_mm / 2, voxel_mm, dtype=np.float32) for lo, hi in zip(*box_mm))
    volume = np.full((len(z), len(y), len(x)), background, dtype=np.float32)
    for layer in layers:
        rotation = pose_to_matrix(torch.tensor([0.0, 0.0, 0.0, *layer.tilt], dtype=torch.float64))[:3, :3].numpy()
        box = _bounding_box(layer, rotation, (x, y, z))
        offsets = (
            x[None, None, box[2]] - layer.center[0],
            y[None, box[1], None] - layer.center[1],
            z[box[0], None, None] - layer.center[2],
        )  # mm from the center along x, y, z, broadcastable to the box [z, y, x]
        # heart frame -> the ellipsoid's own axes: local_k = sum_j offset_j * rotation[j, k]
        u, v, w = (sum(offset * np.float32(rotation[j, k]) for j, offset in enumerate(offsets)) for k in range(3))
        a_u, a_v, a_w = layer.axes
        widening = np.maximum(1.0 + np.float32(layer.taper / a_v) * v, MIN_WIDENING)
        radius = np.sqrt((u / (a_u * widening)) ** 2 + (v / a_v) ** 2 + (w / (a_w * widening)) ** 2)
        inside = 0.5 - 0.5 * np.tanh((radius - 1.0) * min(layer.axes) / EDGE_MM)  # logistic edge
        block = volume[box]
        block += inside * (layer.value - block)
    volume *= 1.0 + echo_gradient * y[None, :, None]
    if rng is not None:
        volume *= 1.0 + TEXTURE_STD * rng.standard_normal(volume.shape, dtype=np.float32)
    return torch.from_numpy(volume)[None, None]


def _bounding_box(layer: Ellipsoid, rotation: np.ndarray, grid: Sequence[np.ndarray]) -> Tuple[slice, slice, slice]:
    """The voxels that the layer can change, as ``[z, y, x]`` slices: its rotated, widened box plus the edge."""
    widest = 1.0 + abs(layer.taper)
    local_half = np.asarray(layer.axes) * np.array([widest, 1.0, widest])
    half = np.abs(rotation) @ local_half + 3.0 * EDGE_MM  # [3] x, y, z
    x, y, z = grid
    return tuple(
        slice(*np.searchsorted(axis, [center - reach, center + reach]))
        for axis, center, reach in zip((z, y, x), layer.center[::-1], half[::-1])
    )


def target_pose(rng: np.random.Generator) -> np.ndarray:
    """The standard plane: probe below the apex looking up the long axis, aimed a little differently per patient.

    ``[4, 4]`` float64 probe-to-heart matrix; the aim's spread (~1 mm, ~1 degree) is small against the pose range.
    """
    aim = np.concatenate([rng.normal(0.0, 1.0, 3), rng.normal(0.0, 1.0, 3)])
    aim[2] -= PROBE_STANDOFF_MM
    return pose_to_matrix(torch.from_numpy(aim)).numpy()
