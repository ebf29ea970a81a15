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
import os
import shutil
import textwrap
from pathlib import Path
from typing import IO, Iterator, List, Optional, Sequence

import numpy as np
from PIL import Image

from ..config import whole_number
from ..io.fileio import atomic_open, is_text_path, os_reason, read_json, write_json
from ..names import TRANSITIONS_FILE
from ..errors import CardiacDreamerError, ConfigError, OutputError
from .patient import (
    DEFAULT_VERSION, GENERATOR_VERSIONS, MAX_SEED, PATIENT_FILE, PhantomPatient, check_image_size, check_version,
)
from .trajectories import LABEL_DECIMALS, SWEEP_STRIDE, Trajectory, plan_trajectory, resolve_counts

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None
    import msvcrt

logger = logging.getLogger(__name__)

MARKER_FILE = "phantom.json"  # the directory's marker: written last, it says the phantom is complete
LOCK_FILE = ".phantom.lock"
PATIENT_ENTRIES = {"ft1", "ft2", TRANSITIONS_FILE, PATIENT_FILE}  # all a patient folder of ours holds
SYSTEM_FILES = {".DS_Store", "Thumbs.db", "desktop.ini"}  # what a file browser leaves in a folder it shows
MAX_PATIENTS = 10_000  # more would be a typo: refused before a list of a billion folder names is built


def generate_phantom(
    output_dir,
    num_patients: int = 6,
    pairs_per_patient: Optional[int] = None,
    image_size: int = 224,
    seed: int = 0,
    *,
    frames_per_patient: Optional[int] = None,
    trajectory: Optional[str] = None,
    version: str = DEFAULT_VERSION,
) -> List[Path]:
    """Write ``num_patients`` folders ``phantom_01``... under ``output_dir`` and return their paths.

    Each folder holds ``ft1/``, ``ft2/`` (RGB PNGs with gray content), ``transitions_dataset.json`` and
    ``phantom.json`` (what :meth:`PhantomPatient.from_folder` needs). ``version`` is the phantom (``"v4"``: patients
    that differ like people, a beating heart, a real export's look; ``"v3"``: the static phantom of before).
    Give ``pairs_per_patient``, ``frames_per_patient`` or neither (500 frames); ``trajectory`` is ``"sweep"``
    (v4's default: sweeps converging to the view like a real export, each pair its own two files), ``"random"``
    (v3's default: independent pairs, the move independent of the pose) or ``"sonographer"`` (a walk drifting back
    to the view, frames shared between pairs). Frame ``f`` of patient ``i`` is exactly ``patient.render(pose_f,
    image_size, rng=patient.frame_rng(f), cycle=patient.frame_cycle(f))`` with ``patient = PhantomPatient(i, seed,
    version=version)``.

    Deterministic for a seed. A complete phantom with the same parameters (recorded in ``output_dir/phantom.json``,
    written last) is reused as it is; processes generating into the same directory at once take turns, and the
    later ones reuse what the first wrote. ``output_dir`` must be new, empty or a phantom's: a folder holding anything
    else (the user's data) is refused, and only folders this writer made are ever replaced.
    """
    if not is_text_path(output_dir):
        raise ConfigError(f"the phantom's output directory must be a folder's path, got {output_dir!r}")
    if not os.fspath(output_dir).strip():
        raise ConfigError("the phantom's output directory is empty (an unset variable?); name a folder")
    num_patients = whole_number(num_patients, "the phantom's number of patients", 1, MAX_PATIENTS)
    seed = whole_number(seed, "the phantom's seed", 0, MAX_SEED)
    image_size = check_image_size(image_size)
    if pairs_per_patient is not None:  # the upper bound is resolve_counts', on the frames they need
        pairs_per_patient = whole_number(pairs_per_patient, "the phantom's pairs per patient", 1)
    if frames_per_patient is not None:
        frames_per_patient = whole_number(frames_per_patient, "the phantom's frames per patient", 1)
    check_version(version)
    trajectory = trajectory or ("sweep" if version == "v4" else "random")
    frames, pairs = resolve_counts(trajectory, pairs_per_patient, frames_per_patient)
    output_dir = Path(output_dir)
    params = {
        "generator_version": GENERATOR_VERSIONS[version],
        "version": version,
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

    _refuse_foreign(output_dir)
    try:
        output_dir.mkdir(parents=True, exist_ok=True)
        with _exclusive_lock(output_dir / LOCK_FILE):
            if _is_complete(output_dir, params, folders):  # another process wrote it while this one waited
                logger.info("reusing the phantom another process wrote in %s", output_dir)
                return folders
            _remove_previous(output_dir, folders)
            for index, folder in enumerate(folders, start=1):
                patient = PhantomPatient(index, seed, image_size, version)
                folder.mkdir()
                # first: it marks the folder as this writer's, so a rewrite may replace it even if cut short
                patient.write_description(folder, trajectory=trajectory, frames=frames, pairs=pairs)
                _write_patient(folder, patient, plan_trajectory(trajectory, patient.trajectory_rng(), frames, pairs))
                logger.info("wrote %s (%d frames, %d pairs)", folder, frames, pairs)
            write_json(output_dir / MARKER_FILE, dict(params, folders=[folder.name for folder in folders]))
    except OSError as error:  # no space, no permission, a file in the way
        raise OutputError(f"{error.filename or output_dir}: cannot write the phantom ({os_reason(error)})") from None
    return folders


def _refuse_foreign(output_dir: Path) -> None:
    """Write only into a new or empty folder or one this writer has used: it holds the lock file or the writer's
    marker, and nothing else but patient folders (``phantom_*``) and a file browser's litter. Pointed at the user's
    data, the writer would mix phantom patients into it, or take a ``phantom.json`` of theirs for its marker."""
    if output_dir.exists() and not output_dir.is_dir():
        raise OutputError(f"{output_dir}: the phantom's output directory is a file; name a folder")
    try:
        names = sorted(child.name for child in output_dir.iterdir()
                       if child.name not in SYSTEM_FILES) if output_dir.is_dir() else []
    except OSError as error:
        raise OutputError(f"{output_dir}: cannot read the phantom's output directory ({os_reason(error)})") from None
    if TRANSITIONS_FILE in names:  # a patient folder: its own phantom.json is a patient's, not this writer's marker
        raise OutputError(f"{output_dir}: a patient folder (it holds {TRANSITIONS_FILE}), not a phantom's; write the "
                          "phantom into a new or empty folder (nothing was written)")
    others = [name for name in names if not _writers_entry(output_dir / name)]
    if names and (others or (LOCK_FILE not in names and MARKER_FILE not in names)):
        shown = others or names
        listed = ", ".join(shown[:4]) + (f" and {len(shown) - 4} more" if len(shown) > 4 else "")
        raise OutputError(f"{output_dir}: not empty and not a phantom's folder (it holds {listed}); write the phantom "
                          "into a new or empty folder, or move your files out of this one (nothing was written)")
    if MARKER_FILE in names:
        try:
            _read_marker(output_dir)
        except CardiacDreamerError as error:
            if os.path.lexists(output_dir / MARKER_FILE):  # else another writer removed it while rewriting
                raise OutputError(f"{error}; write the phantom into a new or empty folder (nothing was written)") \
                    from None


def _writers_entry(path: Path) -> bool:
    """What a phantom's folder may hold: the lock, the marker, patient folders, litter (the marker's temporary file
    of a write a kill cut short included), and what vanished since the folder was listed (another writer rewriting
    the phantom removes its own files)."""
    name = path.name
    return name in (LOCK_FILE, MARKER_FILE) or _litter(name) or \
        (name.startswith("phantom_") and (path.is_dir() or path.is_symlink())) or not os.path.lexists(path)


def _read_marker(output_dir: Path) -> dict:
    """The writer's marker in ``output_dir``; OutputError when it is missing, unreadable (a pipe or a folder
    included) or not the writer's (a ``phantom.json`` of the user's)."""
    path = output_dir / MARKER_FILE
    marker = read_json(path, "the phantom's marker", OutputError)
    if not isinstance(marker, dict) or not isinstance(marker.get("folders"), list) or \
            "generator_version" not in marker:
        raise OutputError(f"{path}: not the phantom writer's marker (no generator_version or folders)")
    return marker


def _is_complete(output_dir: Path, params: dict, folders: Sequence[Path]) -> bool:
    try:
        marker = _read_marker(output_dir)
    except CardiacDreamerError:
        return False
    same = all(marker.get(key) == value for key, value in params.items())
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


def _remove_previous(output_dir: Path, folders: Sequence[Path]) -> None:
    """Delete the marker and the patient folders of an earlier phantom here (complete, or cut short by a crash), so
    no stale patient outlives a new one. A folder is removed only when this writer made it (it holds the patient's
    ``phantom.json``, written first, or nothing) and holds nothing but what the writer puts in a patient folder
    (and a file browser's litter). Any other folder is refused, before anything is deleted, when the new phantom
    needs its name or it holds an earlier phantom patient (kept beside the new patients, it would be read with
    them), and left alone otherwise (a real patient's export named like a phantom's)."""
    previous = sorted(folder for folder in output_dir.glob("phantom_*") if folder.is_dir() or folder.is_symlink())
    for folder in previous:
        foreign = _foreign_entries(folder)
        stale = not folder.is_symlink() and _describes_a_patient(folder / PATIENT_FILE)
        if foreign and (folder in folders or stale):
            raise OutputError(f"{folder}: holds what the phantom writer did not put there ({', '.join(foreign[:3])}); "
                              "move it away to write the phantom here (nothing was deleted)")
    (output_dir / MARKER_FILE).unlink(missing_ok=True)
    for folder in previous:
        if not _foreign_entries(folder):
            logger.warning("replacing phantom folder %s", folder)
            shutil.rmtree(folder)
        else:
            logger.warning("leaving %s alone: the phantom writer did not make it", folder)


def _foreign_entries(folder: Path) -> List[str]:
    """What a patient folder holds besides a phantom patient's files, temporary files of one being written and a
    file browser's litter: the folder itself when it is a link, and all of it when it is not the writer's (a real
    patient's export named like a phantom's)."""
    if folder.is_symlink():
        return [f"{folder.name} is a link"]
    names = sorted(child.name for child in folder.iterdir() if not _litter(child.name))
    if names and not _describes_a_patient(folder / PATIENT_FILE) and not _cut_short_by_an_older_writer(folder):
        return [f"{', '.join(names[:3])} without the writer's {PATIENT_FILE}"]
    return [name for name in names if name not in PATIENT_ENTRIES]


def _litter(name: str) -> bool:
    """A file browser's litter, or the temporary file of an atomic write a kill cut short."""
    return name in SYSTEM_FILES or name.startswith("._") or (name.startswith(".") and name.endswith(".tmp"))


def _describes_a_patient(path: Path) -> bool:
    """Whether ``path`` is a phantom patient's description, as :meth:`PhantomPatient.write_description` writes it:
    the writer puts it in a patient folder first, so it marks the folders the writer may replace."""
    try:
        description = read_json(path, "phantom description", OutputError)
    except CardiacDreamerError:
        return False
    return isinstance(description, dict) and {"generator_version", "patient_index", "seed"} <= description.keys()


def _cut_short_by_an_older_writer(folder: Path) -> bool:
    """Whether ``folder`` is a patient that a writer of before (which wrote the description last) left half-written:
    no labels yet, and only frames named as it names this patient's (``frames_<index>_*.png``). The same command
    must be able to finish such a phantom; a real export always holds its transitions file."""
    number = folder.name[len("phantom_"):]
    if not number.isdigit() or (folder / TRANSITIONS_FILE).exists():
        return False
    prefix = f"frames_{int(number):04d}_"
    entries = [child for child in folder.iterdir() if not _litter(child.name)]
    return all(child.name in ("ft1", "ft2") and child.is_dir() and not child.is_symlink() and
               all(frame.name.startswith(prefix) and frame.suffix == ".png" or _litter(frame.name)
                   for frame in child.iterdir()) for child in entries)


def _write_patient(folder: Path, patient: PhantomPatient, trajectory: Trajectory) -> None:
    """Render and write the frames, then the labels."""
    for sub in ("ft1", "ft2"):
        (folder / sub).mkdir(parents=True)
    if trajectory.files == "pair":
        _write_pair_files(folder, patient, trajectory)
    else:
        _write_frame_files(folder, patient, trajectory)
    with atomic_open(folder / TRANSITIONS_FILE, "w") as stream:
        _write_entries(stream, trajectory, patient.index)


def _render_png(patient: PhantomPatient, trajectory: Trajectory, frame: int) -> bytes:
    pose = trajectory.poses[frame]
    return _encode_png(patient.render(pose, rng=patient.frame_rng(frame), cycle=patient.frame_cycle(frame)))


def _write_pair_files(folder: Path, patient: PhantomPatient, trajectory: Trajectory) -> None:
    """Each pair its own two files, named after the pair's t1 frame; a frame two pairs share is rendered once
    (pairs run along the sweep, so only the last few frames are held)."""
    held = {}
    for t1, t2 in trajectory.pairs:
        held = {frame: png for frame, png in held.items() if frame >= t1}
        name = _file_name(patient.index, int(t1), trajectory.files)
        for sub, frame in (("ft1", int(t1)), ("ft2", int(t2))):
            if frame not in held:
                held[frame] = _render_png(patient, trajectory, frame)
            (folder / sub / name).write_bytes(held[frame])


def _write_frame_files(folder: Path, patient: PhantomPatient, trajectory: Trajectory) -> None:
    """Render and write each frame in turn (to ``ft1/``, ``ft2/`` or both, as the pairs use it)."""
    subfolders = ("ft1", "ft2")
    used = np.zeros((len(trajectory.poses), 2), dtype=bool)  # [F, 2]: frame f is a t1, a t2 of some pair
    used[trajectory.pairs[:, 0], 0] = used[trajectory.pairs[:, 1], 1] = True
    for frame in np.flatnonzero(used.any(1)):
        png = _render_png(patient, trajectory, int(frame))
        for sub, wanted in zip(subfolders, used[frame]):
            if wanted:
                (folder / sub / _file_name(patient.index, int(frame), trajectory.files)).write_bytes(png)


def _file_name(patient_index: int, frame: int, files: str) -> str:
    """``frames_<patient>_<scan>_<frame>.png``: sweeps are scans 01, 02... (frame numbered within the sweep)."""
    scan, frame = divmod(frame, SWEEP_STRIDE) if files == "pair" else (0, frame)
    return f"frames_{patient_index:04d}_{scan + 1:02d}_{frame:04d}.png"


def _write_entries(stream: IO[str], trajectory: Trajectory, patient_index: int) -> None:
    """The export's JSON list, one entry at a time (the same text as ``json.dump(entries, indent=2)``)."""
    stream.write("[")
    for number, (t1, t2) in enumerate(trajectory.pairs):  # numpy rows: no Python copy of every pair
        t1, t2 = int(t1), int(t2)
        at1, at2 = trajectory.poses[t1], trajectory.poses[t2]
        names = [_file_name(patient_index, t1 if trajectory.files == "pair" else t, trajectory.files)
                 for t in (t1, t2)]
        entry = {
            "ft1_image_path": f"ft1\\{names[0]}",
            "ft2_image_path": f"ft2\\{names[1]}",
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
