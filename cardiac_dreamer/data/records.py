"""Read and validate ``transitions_dataset.json`` files into plain records (image paths and 6-DOF labels).

Every entry of a file is checked here, up front, so a broken export fails before any training starts, with one
line naming the file, the entry index and the problem. Images are only checked for existence and confinement
here; decoding problems surface when :class:`~cardiac_dreamer.data.TransitionsDataset` decodes them.
"""
from __future__ import annotations

import json
import logging
import math
import ntpath
import posixpath
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Iterable, List, Mapping, Optional, Tuple, Union

from ..errors import DataError

logger = logging.getLogger(__name__)

TRANSITIONS_FILE = "transitions_dataset.json"
IMAGE_KEYS = ("ft1_image_path", "ft2_image_path")
LABEL_KEYS = ("at1_6dof", "action_change_6dof", "at2_6dof")
REQUIRED_KEYS = IMAGE_KEYS + LABEL_KEYS

PathLike = Union[str, Path]
Vector = Tuple[float, ...]


@dataclass(frozen=True)
class TransitionRecord:
    """One (image at t1, move, image at t2) entry of a patient folder, labels in mm and degrees."""

    patient_id: str
    folder: str
    index: int  # entry index in the JSON list
    image_t1: Path  # absolute, resolved, inside the data directory
    image_t2: Path
    image_t1_rel: str  # as written in the JSON, for reports
    image_t2_rel: str
    at1: Vector
    action_change: Vector
    at2: Vector
    source: Optional[Path] = None  # the JSON file, so decoding errors can name the file and the entry

    def where(self) -> str:
        """``"<json file>: entry <i>"``, the prefix of every error about this record."""
        return f"{self.source or self.folder}: entry {self.index}"


def find_patient_folders(data_dir: PathLike) -> List[str]:
    """Sorted names of the direct sub-folders of ``data_dir`` that hold a transitions file."""
    data_dir = Path(data_dir)
    if not data_dir.exists():
        raise DataError(f"{data_dir}: data directory not found")
    if not data_dir.is_dir():
        raise DataError(f"{data_dir}: data directory is not a directory")
    folders = sorted(child.name for child in data_dir.iterdir() if (child / TRANSITIONS_FILE).is_file())
    if not folders:
        raise DataError(f"{data_dir}: no patient folder (no sub-folder holds {TRANSITIONS_FILE})")
    return folders


def read_patient_records(
    data_dir: PathLike, folder: str, patient_id: Optional[str] = None
) -> List[TransitionRecord]:
    """All entries of ``data_dir/folder/transitions_dataset.json``, every path and label validated."""
    data_root = Path(data_dir).resolve()
    json_path = Path(data_dir) / folder / TRANSITIONS_FILE
    entries = _load_entries(json_path)
    patient_id = folder if patient_id is None else patient_id
    records: List[TransitionRecord] = []
    first_seen: Dict[Tuple[str, str], int] = {}
    for index, entry in enumerate(entries):
        where = f"{json_path}: entry {index}"
        record = _parse_entry(entry, where, data_root, json_path, folder, patient_id, index)
        key = (str(record.image_t1), str(record.image_t2))
        if key in first_seen:
            raise DataError(
                f"{where}: duplicate of entry {first_seen[key]} "
                f"(same images {record.image_t1_rel!r} and {record.image_t2_rel!r})"
            )
        first_seen[key] = index
        records.append(record)
    return records


def read_records(
    data_dir: PathLike,
    folders: Optional[Iterable[str]] = None,
    grouping: Optional[Mapping[str, str]] = None,
    max_pairs_per_patient: Optional[int] = None,
) -> List[TransitionRecord]:
    """Records of ``folders`` (default: every patient folder), each labelled with its patient id.

    ``grouping`` maps folder -> patient id (folders absent from it are their own patient);
    ``max_pairs_per_patient`` keeps the first N entries of each folder, for quick debugging runs.
    """
    folders = find_patient_folders(data_dir) if folders is None else list(folders)
    grouping = grouping or {}
    records: List[TransitionRecord] = []
    for folder in folders:
        folder_records = read_patient_records(data_dir, folder, grouping.get(folder, folder))
        records.extend(folder_records[:max_pairs_per_patient])
    logger.info("read %d transitions from %d patient folders in %s", len(records), len(folders), data_dir)
    return records


def _load_entries(json_path: Path) -> List[Any]:
    if not json_path.is_file():
        raise DataError(f"{json_path}: transitions file not found")
    try:
        text = json_path.read_text(encoding="utf-8-sig")  # exports written on Windows may carry a BOM
    except (OSError, UnicodeDecodeError) as error:
        raise DataError(f"{json_path}: cannot read transitions file ({error})") from None
    try:
        entries = json.loads(text)
    except json.JSONDecodeError as error:
        raise DataError(
            f"{json_path}: invalid JSON at line {error.lineno} column {error.colno}: {error.msg}"
        ) from None
    if not isinstance(entries, list):
        raise DataError(f"{json_path}: expected a JSON list of entries, got {type(entries).__name__}")
    if not entries:
        raise DataError(f"{json_path}: the list of entries is empty")
    return entries


def _parse_entry(
    entry: Any, where: str, data_root: Path, json_path: Path, folder: str, patient_id: str, index: int
) -> TransitionRecord:
    if not isinstance(entry, dict):
        raise DataError(f"{where}: expected an object, got {type(entry).__name__}")
    missing = [key for key in REQUIRED_KEYS if key not in entry]
    if missing:
        raise DataError(f"{where}: missing key(s) {', '.join(missing)}")
    patient_dir = data_root / folder
    image_t1, image_t2 = (_resolve_image(entry[key], key, where, patient_dir, data_root) for key in IMAGE_KEYS)
    at1, action_change, at2 = (_vector(entry[key], key, where) for key in LABEL_KEYS)
    return TransitionRecord(
        patient_id=patient_id,
        folder=folder,
        index=index,
        image_t1=image_t1,
        image_t2=image_t2,
        image_t1_rel=entry[IMAGE_KEYS[0]],
        image_t2_rel=entry[IMAGE_KEYS[1]],
        at1=at1,
        action_change=action_change,
        at2=at2,
        source=json_path,
    )


def _resolve_image(raw: Any, key: str, where: str, patient_dir: Path, data_root: Path) -> Path:
    """The absolute image path; it must be relative and stay inside the patient folder (and, once symlinks are
    resolved, inside the data directory or the patient folder's own target)."""
    if not isinstance(raw, str) or not raw.strip():
        raise DataError(f"{where}: {key} must be a non-empty string, got {raw!r}")
    if posixpath.isabs(raw) or ntpath.isabs(raw) or ntpath.splitdrive(raw)[0]:
        raise DataError(f"{where}: {key} {raw!r} is absolute; paths must be relative to the patient folder")
    relative = posixpath.normpath(raw.replace("\\", "/"))
    if relative == ".." or relative.startswith("../"):
        raise DataError(f"{where}: {key} {raw!r} escapes the patient folder")
    path = (patient_dir / relative).resolve()
    allowed = (data_root, patient_dir.resolve())
    if not any(path == root or root in path.parents for root in allowed):
        raise DataError(f"{where}: {key} {raw!r} resolves to {path}, outside the data directory")
    if not path.is_file():
        raise DataError(f"{where}: {key} image not found: {raw!r} (looked for {path})")
    return path


def _vector(raw: Any, key: str, where: str) -> Vector:
    if not isinstance(raw, list) or len(raw) != 6:
        size = f"length {len(raw)}" if isinstance(raw, list) else type(raw).__name__
        raise DataError(f"{where}: {key} must be a list of 6 numbers [x, y, z, roll, pitch, yaw], got {size}")
    for axis, value in enumerate(raw):
        # bool is an int subclass, but a true/false label is an export bug, not a number.
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise DataError(f"{where}: {key}[{axis}] must be a finite number, got {value!r}")
    return tuple(float(value) for value in raw)
