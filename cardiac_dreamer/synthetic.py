"""A procedural echocardiography phantom written in exactly the real export format.

Why: demos, tests and benchmarks need data whose images carry the probe pose, without patient data. Each patient
is a 3-D heart-like volume (four chambers as ellipsoid cavities in myocardial walls, valves, great vessels,
pericardium, lungs, mild speckle) that varies only a little between patients (size, shape, ~1 mm / ~2 degree
jitter), so the pose -> image mapping is shared and a model trained on some patients applies to others. A probe
wanders around a target standard plane; each frame is the oblique slice of the volume at the probe pose, seen
through an ultrasound sector with depth attenuation and speckle. ``at`` is the probe pose relative to the target
plane, ``[x, y, z, roll, pitch, yaw]`` in mm and degrees: x and z shift the anatomy in plane, pitch rotates it in
plane, and y, roll and yaw cut it out of plane; chambers and lung edges lean out of the plane in different
directions so that each out-of-plane DOF moves them differently.

Each unique frame is rendered once; pairs are (frame k, frame k + gap) for a few gaps, so, as in the real
exports, the t2 frame of one pair is the t1 frame of others. Labels are additive: ``at2 == at1 + action_change``.
"""
from __future__ import annotations

import argparse
import json
import logging
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import List, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from .errors import ConfigError
from .geometry import pose_to_matrix

logger = logging.getLogger(__name__)

GENERATOR_VERSION = 2  # bump when the output changes, so stale phantoms on disk are regenerated
MARKER_FILE = "phantom.json"
TRANSITIONS_FILE = "transitions_dataset.json"
FRAME_GAPS = (1, 2, 3)  # frames between t1 and t2
POSE_LIMITS = np.array([15.0, 15.0, 15.0, 20.0, 20.0, 20.0])  # |at| stays below these (mm, deg)
LABEL_DECIMALS = 3

DEPTH_MM = 160.0  # imaging depth of the sector
SECTOR_HALF_ANGLE_DEG = 38.0
PROBE_STANDOFF_MM = 25.0  # distance from the target probe position to the heart apex
VOXEL_MM = 2.0
# heart frame: x lateral (LV at +x), y posterior, z apex -> base; the box holds every sector within POSE_LIMITS
VOLUME_MIN_MM = np.array([-150.0, -110.0, -45.0])
VOLUME_MAX_MM = np.array([150.0, 110.0, 160.0])
RENDER_CHUNK = 64  # frames sampled per grid_sample call, bounds memory at large image sizes

TISSUE, MUSCLE, BLOOD, PERICARDIUM, VALVE, LUNG = 0.20, 0.60, 0.03, 0.90, 0.75, 0.95  # echogenicity
OBLIQUE_DEG = 32.0  # how far the chambers' and lungs' axes lean out of the standard plane


@dataclass(frozen=True)
class Ellipsoid:
    """A soft-edged ellipsoid that paints ``value`` over what lies beneath it (mm, heart frame).

    ``tilt`` (roll, pitch, yaw in degrees, the pose convention) turns its axes away from the heart's: a tilted
    structure crosses the imaging plane obliquely, so moving the plane out of plane slides its section in plane.
    """

    center: Tuple[float, float, float]
    axes: Tuple[float, float, float]
    value: float
    tilt: Tuple[float, float, float] = (0.0, 0.0, 0.0)


def generate_phantom(
    output_dir, num_patients: int = 6, pairs_per_patient: int = 100, image_size: int = 224, seed: int = 0
) -> List[Path]:
    """Write ``num_patients`` folders ``phantom_01``... under ``output_dir`` and return their paths.

    Deterministic for a seed. A complete phantom with the same parameters (recorded in ``output_dir/phantom.json``,
    written last) is reused as it is, so repeated demos and tests cost nothing.
    """
    _check_arguments(num_patients, pairs_per_patient, image_size, seed)
    output_dir = Path(output_dir)
    params = {
        "generator_version": GENERATOR_VERSION,
        "num_patients": num_patients,
        "pairs_per_patient": pairs_per_patient,
        "image_size": image_size,
        "seed": seed,
    }
    width = max(2, len(str(num_patients)))
    folders = [output_dir / f"phantom_{number:0{width}d}" for number in range(1, num_patients + 1)]
    if _is_complete(output_dir, params, folders):
        logger.info("reusing the phantom in %s (%d patients)", output_dir, num_patients)
        return folders

    _remove_previous(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    for number, folder in enumerate(folders, start=1):
        rng = np.random.default_rng([seed, number])
        _write_patient(folder, number, rng, pairs_per_patient, image_size)
        logger.info("wrote %s (%d pairs)", folder, pairs_per_patient)
    marker = dict(params, folders=[folder.name for folder in folders])
    (output_dir / MARKER_FILE).write_text(json.dumps(marker, indent=2))
    return folders


def _check_arguments(num_patients: int, pairs_per_patient: int, image_size: int, seed: int) -> None:
    if num_patients < 1 or pairs_per_patient < 1:
        raise ConfigError(f"phantom needs >= 1 patient and >= 1 pair, got {num_patients} and {pairs_per_patient}")
    if image_size < 16:
        raise ConfigError(f"phantom image_size must be >= 16, got {image_size}")
    if seed < 0:
        raise ConfigError(f"phantom seed must be >= 0, got {seed}")


def _is_complete(output_dir: Path, params: dict, folders: Sequence[Path]) -> bool:
    try:
        marker = json.loads((output_dir / MARKER_FILE).read_text())
    except (OSError, ValueError):
        return False
    same = all(marker.get(key) == value for key, value in params.items())
    return same and all((folder / TRANSITIONS_FILE).is_file() for folder in folders)


def _remove_previous(output_dir: Path) -> None:
    """Delete the marker and the folders of an earlier phantom here, so no stale patient outlives a new one."""
    marker_path = output_dir / MARKER_FILE
    try:
        previous = json.loads(marker_path.read_text()).get("folders", [])
    except (OSError, ValueError, AttributeError):
        previous = []
    marker_path.unlink(missing_ok=True)
    stale = {output_dir / name for name in previous} | set(output_dir.glob("phantom_*"))
    for folder in sorted(stale):
        if folder.is_dir() and folder.name.startswith("phantom_"):
            logger.warning("replacing phantom folder %s", folder)
            shutil.rmtree(folder)


def _write_patient(folder: Path, number: int, rng: np.random.Generator, num_pairs: int, image_size: int) -> None:
    pairs = _pair_indices(num_pairs)
    num_frames = max(k + gap for k, gap in pairs) + 1
    volume = _heart_volume(_heart_layers(rng), rng)
    target = _target_pose(rng)
    poses = _trajectory(rng, num_frames)
    frames = _render(volume, target, poses, image_size, rng)

    names = [f"frames_{number:04d}_01_{frame:04d}.png" for frame in range(num_frames)]
    for sub, used in (("ft1", {k for k, _ in pairs}), ("ft2", {k + gap for k, gap in pairs})):
        (folder / sub).mkdir(parents=True)
        for frame in sorted(used):
            _write_png(folder / sub / names[frame], frames[frame])

    entries = []
    for k, gap in pairs:
        at1, at2 = poses[k], poses[k + gap]
        entries.append(
            {
                "ft1_image_path": f"ft1\\{names[k]}",
                "ft2_image_path": f"ft2\\{names[k + gap]}",
                "at1_6dof": at1.tolist(),
                "action_change_6dof": np.round(at2 - at1, LABEL_DECIMALS).tolist(),
                "at2_6dof": at2.tolist(),
                "frame_t1": k,
                "frame_t2": k + gap,
            }
        )
    (folder / TRANSITIONS_FILE).write_text(json.dumps(entries, indent=2))


def _pair_indices(num_pairs: int) -> List[Tuple[int, int]]:
    """``(k, gap)`` for consecutive k and every gap, stopping after ``num_pairs``: few frames serve many pairs."""
    pairs: List[Tuple[int, int]] = []
    k = 0
    while len(pairs) < num_pairs:
        pairs.extend((k, gap) for gap in FRAME_GAPS[: num_pairs - len(pairs)])
        k += 1
    return pairs


def _heart_layers(rng: np.random.Generator) -> List[Ellipsoid]:
    """Painting order of the heart's structures, with small per-patient changes of size, shape and position.

    The layout is shared by all patients (a few % of size, ~1 mm and ~2 degrees of jitter), so the pose -> image
    mapping learnt on some patients holds for others. Structures lean out of the standard plane in different
    directions, so each out-of-plane DOF moves them differently: elevation (y) slides the ventricles in depth in
    opposite directions and the atria and lung edges sideways; roll moves deep structures more than shallow ones;
    yaw moves the left and right lung edges apart or together.
    """
    scale = rng.uniform(0.97, 1.03) * rng.uniform(0.98, 1.02, size=3)  # overall size and aspect

    def jitter(center, axes, value, tilt=(0.0, 0.0, 0.0)):
        center = (np.asarray(center) + rng.normal(0.0, 1.0, 3)) * scale
        axes = np.asarray(axes) * scale * rng.uniform(0.96, 1.04, 3)
        tilt = np.asarray(tilt) + rng.normal(0.0, 2.0, 3)
        return Ellipsoid(tuple(center), tuple(axes), value, tuple(tilt))

    lean = OBLIQUE_DEG
    wall = rng.uniform(8.0, 10.0)
    lv_cavity = jitter((14, 0, 50), (17, 13, 40), BLOOD, tilt=(lean, 0, 0))
    rv_cavity = jitter((-28, 0, 54), (11, 16, 34), BLOOD, tilt=(-lean, 0, 0))
    la_cavity = jitter((12, 6, 106), (22, 10, 14), BLOOD, tilt=(0, 0, lean))
    ra_cavity = jitter((-26, 4, 102), (20, 10, 15), BLOOD, tilt=(0, 0, -lean))
    lumen = jitter((-2, -16, 90), (9, 9, 28), BLOOD, tilt=(-1.3 * lean, 0, 0))  # ascending aorta, anterior
    descending = jitter((12, 26, 100), (8, 8, 70), BLOOD, tilt=(0, 0.5 * lean, 0))  # descending aorta, posterior

    def walled(cavity: Ellipsoid, thickness: float) -> Ellipsoid:
        return Ellipsoid(cavity.center, tuple(np.asarray(cavity.axes) + thickness), MUSCLE, cavity.tilt)

    sac = jitter((-6, 2, 66), (56, 44, 78), PERICARDIUM)
    return [
        jitter((-118, 0, 70), (50, 70, 95), LUNG, tilt=(0, 0, lean)),  # the lungs flank the sac, edges oblique
        jitter((112, 0, 70), (50, 70, 95), LUNG, tilt=(0, 0, lean)),
        sac,
        Ellipsoid(sac.center, tuple(np.asarray(sac.axes) - 3.0), TISSUE),
        walled(descending, 3.0),
        walled(lv_cavity, wall),
        walled(rv_cavity, 0.5 * wall),
        walled(la_cavity, 3.0),
        walled(ra_cavity, 3.0),
        walled(lumen, 3.0),
        lv_cavity,
        rv_cavity,
        la_cavity,
        ra_cavity,
        lumen,
        descending,
        jitter((12, 4, 90), (16, 12, 2.0), VALVE, tilt=(0, 0, lean)),  # mitral
        jitter((-26, 2, 87), (14, 12, 2.0), VALVE, tilt=(0, 0, -lean)),  # tricuspid
        jitter((22, -6, 40), (4, 4, 10), MUSCLE),  # papillary muscles
        jitter((18, 8, 44), (4, 4, 8), MUSCLE),
    ]


def _heart_volume(layers: Sequence[Ellipsoid], rng: np.random.Generator) -> torch.Tensor:
    """Paint the layers on a voxel grid and multiply by a mild speckle texture: ``[Z, Y, X]`` float32."""
    axes_mm = [np.arange(lo, hi + VOXEL_MM / 2, VOXEL_MM) for lo, hi in zip(VOLUME_MIN_MM, VOLUME_MAX_MM)]
    x, y, z = [a.astype(np.float32) for a in axes_mm]
    volume = np.full((len(z), len(y), len(x)), TISSUE, dtype=np.float32)
    for layer in layers:
        # only the voxels within the bounding sphere's box (plus the soft edge) can change
        reach = max(layer.axes) + 3.0
        box = [slice(*np.searchsorted(a, [c - reach, c + reach])) for a, c in zip((z, y, x), layer.center[::-1])]
        offsets = np.stack(
            np.broadcast_arrays(
                x[None, None, box[2]] - layer.center[0],
                y[None, box[1], None] - layer.center[1],
                z[box[0], None, None] - layer.center[2],
            ),
            -1,
        )  # [z, y, x, 3] mm from the center
        rotation = pose_to_matrix(torch.tensor([0.0, 0.0, 0.0, *layer.tilt], dtype=torch.float64))[:3, :3]
        local = offsets @ rotation.numpy().astype(np.float32)  # heart frame -> the ellipsoid's own axes
        radius = np.sqrt(((local / np.asarray(layer.axes, dtype=np.float32)) ** 2).sum(-1))
        inside = 0.5 - 0.5 * np.tanh((radius - 1.0) * (0.5 * min(layer.axes)))  # logistic edge, ~1 mm wide
        block = volume[tuple(box)]
        block += inside * (layer.value - block)
    texture = rng.gamma(8.0, 1.0 / 8.0, size=volume.shape).astype(np.float32)  # mean 1, mild tissue texture
    return torch.from_numpy(volume * texture)


def _target_pose(rng: np.random.Generator) -> torch.Tensor:
    """The standard plane: probe below the apex looking up the long axis, aimed a little differently per patient.

    The aim's spread (~1 mm, ~1 degree) is small against the pose range, so a pose means the same view everywhere.
    """
    aim = np.concatenate([rng.normal(0.0, 1.0, 3), rng.normal(0.0, 1.0, 3)])
    aim[2] -= PROBE_STANDOFF_MM
    return pose_to_matrix(torch.from_numpy(aim))  # [4, 4] float64


def _trajectory(rng: np.random.Generator, num_frames: int) -> np.ndarray:
    """A mean-reverting random walk of the probe around the target, bounded by ``POSE_LIMITS``: ``[n, 6]``."""
    keep = 0.85  # ~7 frames to forget, so a few hundred frames cover the pose space
    spread = 0.6  # stationary std before the tanh: most poses within 0.8 of the limits
    state = rng.normal(0.0, spread, 6)
    walk = np.empty((num_frames, 6))
    for frame in range(num_frames):
        walk[frame] = state
        state = keep * state + np.sqrt(1.0 - keep**2) * rng.normal(0.0, spread, 6)
    return np.round(POSE_LIMITS * np.tanh(walk), LABEL_DECIMALS)


def _render(
    volume: torch.Tensor, target: torch.Tensor, poses: np.ndarray, image_size: int, rng: np.random.Generator
) -> np.ndarray:
    """Slice ``volume`` at each pose through the sector: ``[n, S, S]`` uint8."""
    points, depth, sector = _sector_grid(image_size)
    probe = target @ pose_to_matrix(torch.from_numpy(poses))  # [n, 4, 4] probe in the heart frame
    low = torch.from_numpy(VOLUME_MIN_MM)
    span = torch.from_numpy(VOLUME_MAX_MM - VOLUME_MIN_MM)
    samples = []
    for start in range(0, len(poses), RENDER_CHUNK):
        chunk = probe[start : start + RENDER_CHUNK]
        world = points @ chunk[:, None, :3, :3].transpose(-1, -2) + chunk[:, None, None, :3, 3]  # [c, S, S, 3]
        grid = ((world - low) / span * 2.0 - 1.0).float()
        sampled = F.grid_sample(
            volume[None, None], grid[None], mode="bilinear", padding_mode="border", align_corners=True
        )  # [1, 1, c, S, S]
        samples.append(sampled[0, 0].numpy())
    intensity = np.concatenate(samples)
    gain = 0.35 + 0.65 * np.exp(-depth / 90.0)  # attenuation with depth, partly compensated
    noise = rng.gamma(16.0, 1.0 / 16.0, size=intensity.shape).astype(np.float32)  # per-frame speckle
    image = np.clip(intensity * gain * noise, 0.0, 1.0) ** 0.8 * sector
    return np.round(image * 255.0).astype(np.uint8)


def _sector_grid(image_size: int) -> Tuple[torch.Tensor, np.ndarray, np.ndarray]:
    """Pixel positions in the probe frame ``[S, S, 3]`` (mm; x lateral, z depth), their depth and the sector mask."""
    half_width = DEPTH_MM * np.sin(np.deg2rad(SECTOR_HALF_ANGLE_DEG))
    depth_axis = (np.arange(image_size) + 0.5) / image_size * DEPTH_MM
    lateral_axis = ((np.arange(image_size) + 0.5) / image_size * 2.0 - 1.0) * half_width
    depth, lateral = np.meshgrid(depth_axis, lateral_axis, indexing="ij")  # rows are depth
    points = np.stack([lateral, np.zeros_like(depth), depth], -1)
    distance = np.hypot(lateral, depth)
    angle = np.degrees(np.arctan2(np.abs(lateral), depth))
    sector = ((distance <= DEPTH_MM) & (angle <= SECTOR_HALF_ANGLE_DEG)).astype(np.float32)
    return torch.from_numpy(points), distance.astype(np.float32), sector


def _write_png(path: Path, gray: np.ndarray) -> None:
    """Grayscale content in an RGB PNG, as the real exports store it."""
    Image.fromarray(np.repeat(gray[:, :, None], 3, axis=2), mode="RGB").save(path, compress_level=1)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description="Write a synthetic echocardiography phantom.")
    parser.add_argument("output_dir")
    parser.add_argument("--patients", type=int, default=6)
    parser.add_argument("--pairs", type=int, default=100)
    parser.add_argument("--image_size", type=int, default=224)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    generate_phantom(args.output_dir, args.patients, args.pairs, args.image_size, args.seed)


if __name__ == "__main__":
    main()
