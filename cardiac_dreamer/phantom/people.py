"""Phantom v4's anatomy: hearts that differ the way people do, beat, and sit in a body that breathes.

Why: with every heart alike, an unseen patient is barely harder than unseen frames of a seen one, so the phantom
overstates how well a model generalises. Each patient draws :class:`Traits` (95 % ranges: heart size +-15 %, the
heart's position in the chest +-10 mm and its long axis +-15 degrees, chamber proportions +-12 %, gain +-20 %,
contrast, attenuation, heart and breathing rates). The target view is the acoustic window the probe rests on
(aimed a little differently per patient), alike in every patient, so the heart's size, position, axis and
proportions are what differ there. The chest wall under the probe (:func:`_window`) is painted apart from the
heart (:func:`paint_wall`) and shown wherever it lies, so the near field is alike in every patient and shows the
probe's translations the same way in all.

Same heart frame as :mod:`.anatomy` (x lateral, y posterior, z from the apex to the base). Two volumes are painted
per patient, end-diastole and end-systole (ventricles smaller with thicker walls, atria larger); a frame blends them
by its contraction, so the heart beats without repainting.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import List, Tuple

import numpy as np
import torch

from ..geometry import matrix_to_pose, pose_to_matrix
from .anatomy import (
    CAVITIES, CHAMBER_ELEVATION_MM, CHEST_WALL_AXES_MM, CHEST_WALL_LEAN_DEG, ECHO_GRADIENT_PER_MM, FAT,
    INNER_STRUCTURES, LUNG, PROBE_STANDOFF_MM, TISSUE, Ellipsoid, chest_wall_center, grown, heart_layout, heart_walls,
    paint_volume,
)

VOXEL_MM = 2.5
# every sector the v4 trajectories reach (roll to ~80 degrees with the patient's axis, yaw to ~-65, 25 mm off)
BOX_MM = (np.array([-165.0, -200.0, -75.0]), np.array([165.0, 200.0, 200.0]))
CHAMBER_TAPER, CHAMBER_LEAN_DEG = 0.5, 18.0  # gentler than v3's: the section changes gradually with elevation
# the chest wall at the window: echo of its layers, the skin layer's depth and the pleura's thickness (mm)
SKIN, WALL_MUSCLE, PLEURA, CARTILAGE = 0.9, 0.05, 0.95, 0.9  # dark muscle between bright lines
SKIN_MM, PLEURA_MM = 9.0, 4.0
# the chest wall seen by a probe anywhere on its sweeps (lateral and elevation out to the fan's corners, depth to
# below the pleura), in the window's frame
WALL_BOX_MM = (np.array([-130.0, -130.0, -50.0]), np.array([130.0, 130.0, 140.0]))
HEART_CENTER_MM = np.array([0.0, 0.0, 65.0])  # a bigger heart grows about here: apex up, base down
SYSTOLE_VENTRICLE, SYSTOLE_ATRIUM, SYSTOLE_WALL = 0.78, 1.15, 1.45  # end-systole / end-diastole size factors


@dataclass(frozen=True)
class Traits:
    """What makes one patient's images differ from another's; drawn once per patient."""

    scale: float  # heart size
    chambers: Tuple[float, float, float, float]  # LV, RV, LA, RA size factors
    heart_shift_mm: Tuple[float, float, float]  # the heart's position behind the acoustic window
    heart_tilt_deg: Tuple[float, float, float]  # the heart's long axis (roll, pitch, yaw) against the beam
    wall_mm: float  # how much thicker than usual the chest wall is
    aim: Tuple[float, float, float, float, float, float]  # the target view's offset from the window (mm, degrees)
    gain: float  # overall brightness
    contrast: float  # display exponent: below 1 lifts dark tissue
    attenuation_mm: float  # depth over which the uncompensated echo falls by e
    beat_frames: float  # frames per heart beat
    breath_frames: float  # frames per breath
    breath_mm: float  # how far the heart moves with a breath
    phase: Tuple[float, float]  # cardiac and breathing phase of frame 0, in cycles

    @classmethod
    def draw(cls, rng: np.random.Generator) -> "Traits":
        """The stated spreads are 95 % ranges: normal draws of half that std, cut at the range."""

        def spread(center, half_range, size=None):
            return center + np.clip(rng.normal(0.0, 0.5, size), -1.0, 1.0) * half_range

        return cls(
            scale=float(spread(1.0, 0.15)),
            chambers=tuple(spread(1.0, 0.12, 4).tolist()),
            heart_shift_mm=tuple(spread(0.0, 10.0, 3).tolist()),
            heart_tilt_deg=tuple(spread(0.0, 15.0, 3).tolist()),
            wall_mm=float(spread(0.0, 4.0)),
            aim=tuple(np.concatenate([spread(0.0, 2.0, 3), spread(0.0, 3.0, 3)]).tolist()),
            gain=float(spread(1.0, 0.2)),
            contrast=float(spread(0.85, 0.15)),
            attenuation_mm=float(spread(100.0, 30.0)),
            beat_frames=float(rng.uniform(7.0, 11.0)),
            breath_frames=float(rng.uniform(35.0, 60.0)),
            breath_mm=float(rng.uniform(1.0, 2.5)),
            phase=tuple(rng.uniform(0.0, 1.0, 2).tolist()),
        )

    def alike(self) -> "Traits":
        """The average patient's heart, chest wall, aim and look, with this patient's beat and breath: patients
        that differ only in time and speckle. Why: it tells what the image checks lose to the differences between
        people from what they lose to the sweeps (``benchmarks/phantom_probe.py --alike``)."""
        return replace(self, scale=1.0, chambers=(1.0,) * 4, heart_shift_mm=(0.0,) * 3, heart_tilt_deg=(0.0,) * 3,
                       wall_mm=0.0, aim=(0.0,) * 6, gain=1.0, contrast=0.85, attenuation_mm=100.0)

    def cycle(self, frame: float) -> Tuple[float, float]:
        """``(cardiac, breathing)`` phases in cycles ``[0, 1)`` of frame number ``frame`` of a sweep."""
        return ((self.phase[0] + frame / self.beat_frames) % 1.0, (self.phase[1] + frame / self.breath_frames) % 1.0)


def contraction(cardiac_phase: float) -> float:
    """0 at end-diastole, 1 at end-systole: a quick contraction (a third of the cycle), a slower filling."""
    phase = cardiac_phase % 1.0
    return float(np.sin(0.5 * np.pi * phase / 0.35) ** 2 if phase < 0.35 else
                 0.5 + 0.5 * np.cos(np.pi * (phase - 0.35) / 0.65))


def breathing_shift_mm(breathing_phase: float, traits: Traits) -> np.ndarray:
    """``[3]`` mm the heart has moved (down and back) at this point of the breath."""
    return traits.breath_mm * (0.5 - 0.5 * np.cos(2.0 * np.pi * breathing_phase)) * np.array([0.0, 0.4, 0.9])


def paint_phases(traits: Traits, rng: np.random.Generator) -> torch.Tensor:
    """``[2, 1, Z, Y, X]``: the end-diastolic and end-systolic volumes with the same texture (same ``rng`` draw)."""
    state = rng.bit_generator.state
    volumes = []
    for systole in (False, True):
        rng.bit_generator.state = state  # the same tissue texture in both, so only the anatomy changes
        volumes.append(paint_volume(heart_and_body(traits, systole), rng, BOX_MM, VOXEL_MM, ECHO_GRADIENT_PER_MM))
    return torch.cat(volumes, 0)


def paint_wall(traits: Traits, rng: np.random.Generator) -> torch.Tensor:
    """``[2, 1, Z, Y, X]`` over ``WALL_BOX_MM``: the chest wall's echo, and how much of the echo is the wall's (1
    inside any of its layers, 0 below them, where the heart and the body show). Why apart from the heart: a
    tilted probe's face stays on the skin, so the wall is sampled for the probe upright (``rendering._face_down``),
    the heart for the probe as it is."""
    layers = _window(traits)
    echo = paint_volume(layers, rng, WALL_BOX_MM, VOXEL_MM, ECHO_GRADIENT_PER_MM)
    share = paint_volume([replace(layer, value=1.0) for layer in layers], None, WALL_BOX_MM, VOXEL_MM, 0.0,
                         background=0.0)
    return torch.cat([echo, share], 0)


def target_pose(traits: Traits) -> np.ndarray:
    """The patient's target view: at the acoustic window, aimed up the long axis of the average heart and off by
    ``traits.aim`` (the sonographer's own idea of the view); ``[4, 4]``."""
    aim = np.asarray(traits.aim, dtype=float)
    aim[2] -= PROBE_STANDOFF_MM
    return pose_to_matrix(torch.from_numpy(aim)).numpy()


def heart_and_body(traits: Traits, systole: bool) -> List[Ellipsoid]:
    """Painting order: lungs and fat, then the heart placed by the patient's position and axis (the chest wall is
    painted apart: :func:`paint_wall`)."""
    turn = pose_to_matrix(torch.tensor([0.0, 0.0, 0.0, *traits.heart_tilt_deg], dtype=torch.float64)).numpy()
    shift = np.asarray(traits.heart_shift_mm)
    heart = [_moved(layer, turn[:3, :3], HEART_CENTER_MM, shift) for layer in _heart(traits, systole)]
    return [*_body(), *heart]


def _heart(traits: Traits, systole: bool) -> List[Ellipsoid]:
    s = traits.scale
    lv_f, rv_f, la_f, ra_f = traits.chambers
    ventricle, atrium, wall = (SYSTOLE_VENTRICLE, SYSTOLE_ATRIUM, SYSTOLE_WALL) if systole else (1.0, 1.0, 1.0)

    def placed(layer: Ellipsoid, size: float = 1.0, lateral: float = 1.0, descent_mm: float = 0.0) -> Ellipsoid:
        """``layer`` in this patient's heart: ``size`` widens its section, ``lateral`` scales how far it sits
        from the centre line, ``descent_mm`` moves it toward the apex, and the whole heart grows by ``traits.scale``
        about :data:`HEART_CENTER_MM`."""
        axes = np.asarray(layer.axes, dtype=float) * s * np.array([size, 1.0, size])
        x, y, z = layer.center
        center = HEART_CENTER_MM + (np.array([x * lateral, y, z - descent_mm], dtype=float) - HEART_CENTER_MM) * s
        return replace(layer, center=tuple(center.tolist()), axes=tuple(axes.tolist()))

    heart = heart_layout(CHAMBER_ELEVATION_MM, CHAMBER_LEAN_DEG, CHAMBER_TAPER)
    base_shift = 6.0 * (1.0 - ventricle) / (1.0 - SYSTOLE_VENTRICLE) if systole else 0.0  # the base descends
    sizes = {"lv": lv_f * ventricle, "rv": rv_f * ventricle, "la": la_f * atrium, "ra": ra_f * atrium,
             "posterior_papillary": wall, "anterior_papillary": wall}
    descents = {"la": base_shift, "ra": base_shift, "mitral": base_shift, "tricuspid": base_shift}
    heart = {name: placed(layer, sizes.get(name, 1.0), rv_f if name == "rv" else 1.0, descents.get(name, 0.0))
             for name, layer in heart.items()}
    cavities = [heart[name] for name in CAVITIES]
    return [
        heart["sac"],
        grown(heart["sac"], -3.0, TISSUE),
        *heart_walls(cavities, 9.0 * s * wall),
        *cavities,
        *(heart[name] for name in INNER_STRUCTURES),
    ]


def _window(traits: Traits) -> List[Ellipsoid]:
    """The chest wall under the probe, shown over the heart (which lies behind it, never in it), so the near field
    is alike in every patient but for the wall's thickness; why: translations must show there the same way in every
    patient. Layers (depth at the target view): bright skin and subcutaneous fat (0-9 mm) over dark
    muscle down to the leaning lower face (~32 mm, deeper posteriorly, so y shows) lined by the bright pleura; a
    bright costal cartilage right of the centre line (10-27 mm), whose edge x and yaw move sideways."""
    top = -PROBE_STANDOFF_MM
    wall = chest_wall_center() + np.array([0.0, 0.0, traits.wall_mm])
    lean = (CHEST_WALL_LEAN_DEG, 0.0, 0.0)
    return [
        Ellipsoid(tuple((wall + [0.0, 0.0, PLEURA_MM]).tolist()), CHEST_WALL_AXES_MM, PLEURA, tilt=lean),
        Ellipsoid(tuple(wall.tolist()), CHEST_WALL_AXES_MM, WALL_MUSCLE, tilt=lean),
        Ellipsoid((0.0, 0.0, top + SKIN_MM - 40.0), (250.0, 250.0, 40.0), SKIN),
        Ellipsoid((16.0, 0.0, top + 19.0), (14.0, 250.0, 8.0), CARTILAGE),
    ]


def _body() -> List[Ellipsoid]:
    """Lungs and epicardial fat, painted under the heart."""
    return [
        Ellipsoid((150.0, 0.0, 110.0), (45.0, 150.0, 90.0), LUNG),
        Ellipsoid((-150.0, 0.0, 110.0), (45.0, 150.0, 90.0), LUNG),
        Ellipsoid((-45.0, 0.0, 5.0), (40.0, 150.0, 50.0), FAT),
    ]


def _moved(layer: Ellipsoid, turn: np.ndarray, pivot: np.ndarray, shift: np.ndarray) -> Ellipsoid:
    """``layer`` turned by ``turn`` ``[3, 3]`` about ``pivot`` and moved by ``shift`` (mm)."""
    center = turn @ (np.asarray(layer.center) - pivot) + pivot + shift
    own = pose_to_matrix(torch.tensor([0.0, 0.0, 0.0, *layer.tilt], dtype=torch.float64)).numpy()
    own[:3, :3] = turn @ own[:3, :3]
    tilt = matrix_to_pose(torch.from_numpy(own)).numpy()[3:]
    return replace(layer, center=tuple(center.tolist()), tilt=tuple(tilt.tolist()))
