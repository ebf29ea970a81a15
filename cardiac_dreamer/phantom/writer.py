"""``generate_phantom``: write phantom patients in exactly the real export format, streaming, once.

Why streaming: a phantom can hold hundreds of thousands of frames; each frame is rendered, encoded and written before
the next, and the transitions file is written entry by entry, so memory holds the labels (a few dozen bytes a
frame), never the images. Why a lock: demos, tests and benchmark workers may ask for the same phantom at once; one
process writes it while the others wait, then reuse it.
"""
from __future__ import annotations

import contextlib
import io
import json
import logging
import shutil
import textwrap
from pathlib import Path
from typing import IO, Iterator, List, Optional, Sequence

import numpy as np
from PIL import Image

from ..fileio import atomic_open, write_json
from ..names import TRANSITIONS_FILE
from ..errors import ConfigError
from .patient import GENERATOR_VERSION, PATIENT_FILE, PhantomPatient, check_image_size
from .trajectories import LABEL_DECIMALS, Trajectory, plan_trajectory, resolve_counts

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None
    import msvcrt

logger = logging.getLogger(__name__)

MARKER_FILE = "phantom.json"  # the directory's marker: written last, it says the phantom is complete
LOCK_FILE = ".phantom.lock"


def generate_phantom(
    output_dir,
    num_patients: int = 6,
    pairs_per_patient: Optional[int] = None,
    image_size: int = 224,
    seed: int = 0,
    *,
    frames_per_patient: Optional[int] = None,
    trajectory: str = "random",
) -> List[Path]:
    """Write ``num_patients`` folders ``phantom_01``... under ``output_dir`` and return their paths.

    Each folder holds ``ft1/``, ``ft2/`` (RGB PNGs with gray content), ``transitions_dataset.json`` and
    ``phantom.json`` (what :meth:`PhantomPatient.from_folder` needs). Give ``pairs_per_patient``,
    ``frames_per_patient`` or neither (500 frames); ``trajectory`` is ``"random"`` (independent pairs, the move
    independent of the pose) or ``"sonographer"`` (a walk drifting back to the view, frames shared between pairs).
    Frame ``f`` of patient ``i`` is exactly ``PhantomPatient(i, seed).render(pose_f, image_size,
    rng=PhantomPatient(i, seed).frame_rng(f))``.

    Deterministic for a seed. A complete phantom with the same parameters (recorded in ``output_dir/phantom.json``,
    written last) is reused as it is; processes generating into the same directory at once take turns, and the
    later ones reuse what the first wrote.
    """
    if num_patients < 1:
        raise ConfigError(f"phantom needs >= 1 patient, got {num_patients}")
    if seed < 0:
        raise ConfigError(f"phantom seed must be >= 0, got {seed}")
    check_image_size(image_size)
    frames, pairs = resolve_counts(trajectory, pairs_per_patient, frames_per_patient)
    output_dir = Path(output_dir)
    params = {
        "generator_version": GENERATOR_VERSION,
        "num_patients": num_patients,
        "pairs_per_patient": pairs,
        "frames_per_patient": frames,
        "image_size": image_size,
        "seed": seed,
        "trajectory": trajectory,
    }
    width = max(2, len(str(num_patients)))
    folders = [output_dir / f"phantom_{index:0{width}d}" for index in range(1, num_patients + 1)]
    if _is_complete(output_dir, params, folders):
        logger.info("reusing the phantom in %s (%d patients)", output_dir, num_patients)
        return folders

    output_dir.mkdir(parents=True, exist_ok=True)
    with _exclusive_lock(output_dir / LOCK_FILE):
        if _is_complete(output_dir, params, folders):  # another process wrote it while this one waited
            logger.info("reusing the phantom another process wrote in %s", output_dir)
            return folders
        _remove_previous(output_dir)
        for index, folder in enumerate(folders, start=1):
            patient = PhantomPatient(index, seed, image_size)
            _write_patient(folder, patient, plan_trajectory(trajectory, patient.trajectory_rng(), frames, pairs))
            patient.write_description(folder, trajectory=trajectory, frames=frames, pairs=pairs)
            logger.info("wrote %s (%d frames, %d pairs)", folder, frames, pairs)
        write_json(output_dir / MARKER_FILE, dict(params, folders=[folder.name for folder in folders]))
    return folders


def _is_complete(output_dir: Path, params: dict, folders: Sequence[Path]) -> bool:
    try:
        marker = json.loads((output_dir / MARKER_FILE).read_text())
    except (OSError, ValueError):
        return False
    same = isinstance(marker, dict) and all(marker.get(key) == value for key, value in params.items())
    return same and all((folder / TRANSITIONS_FILE).is_file() and (folder / PATIENT_FILE).is_file()
                        for folder in folders)


@contextlib.contextmanager
def _exclusive_lock(path: Path) -> Iterator[None]:
    """Hold the operating system's lock on ``path``; it is released even when the holder dies."""
    with open(path, "a+b") as handle:
        if fcntl is not None:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        else:
            _lock_on_windows(handle)
        yield  # closing the file releases the lock


def _lock_on_windows(handle: IO[bytes]) -> None:
    handle.seek(0)
    while True:
        try:
            msvcrt.locking(handle.fileno(), msvcrt.LK_LOCK, 1)
            return
        except OSError:  # LK_LOCK gives up after ~10 s; the other generator may need longer
            continue


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


def _write_patient(folder: Path, patient: PhantomPatient, trajectory: Trajectory) -> None:
    """Render and write each frame in turn (to ``ft1/``, ``ft2/`` or both, as the pairs use it), then the labels."""
    subfolders = ("ft1", "ft2")
    used = np.zeros((len(trajectory.poses), 2), dtype=bool)  # [F, 2]: frame f is a t1, a t2 of some pair
    used[trajectory.pairs[:, 0], 0] = used[trajectory.pairs[:, 1], 1] = True
    for sub in subfolders:
        (folder / sub).mkdir(parents=True)
    for frame, pose in enumerate(trajectory.poses):
        png = _encode_png(patient.render(pose, rng=patient.frame_rng(frame)))
        for sub, wanted in zip(subfolders, used[frame]):
            if wanted:
                (folder / sub / _frame_name(patient.index, frame)).write_bytes(png)
    with atomic_open(folder / TRANSITIONS_FILE, "w") as stream:
        _write_entries(stream, trajectory, patient.index)


def _frame_name(patient_index: int, frame: int) -> str:
    return f"frames_{patient_index:04d}_01_{frame:04d}.png"


def _write_entries(stream: IO[str], trajectory: Trajectory, patient_index: int) -> None:
    """The export's JSON list, one entry at a time (the same text as ``json.dump(entries, indent=2)``)."""
    stream.write("[")
    for number, (t1, t2) in enumerate(trajectory.pairs):  # numpy rows: no Python copy of every pair
        t1, t2 = int(t1), int(t2)
        at1, at2 = trajectory.poses[t1], trajectory.poses[t2]
        entry = {
            "ft1_image_path": f"ft1\\{_frame_name(patient_index, t1)}",
            "ft2_image_path": f"ft2\\{_frame_name(patient_index, t2)}",
            "at1_6dof": at1.tolist(),
            "action_change_6dof": np.round(at2 - at1, LABEL_DECIMALS).tolist(),
            "at2_6dof": at2.tolist(),
            "frame_t1": t1,
            "frame_t2": t2,
        }
        stream.write(("," if number else "") + "\n" + textwrap.indent(json.dumps(entry, indent=2), "  "))
    stream.write("\n]")


def _encode_png(gray: np.ndarray) -> bytes:
    """Grayscale content in an RGB PNG, as the real exports store it."""
    buffer = io.BytesIO()
    rgb = np.repeat(gray[:, :, None], 3, axis=2)  # [S, S] -> [S, S, 3]
    Image.fromarray(rgb).save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()
