"""Read and validate ``transitions_dataset.json`` files into plain records (image paths and 6-DOF labels).

Every entry of a file is checked here, up front, so a broken or hostile export fails before any training starts,
with one line naming the file, the entry index and the problem: labels must be plausible numbers, image paths
relative, inside the data directory once symlinks are resolved, and existing regular files; no image may belong to
two patients (a link or a copied folder would leak it between splits). Image contents are checked by
:func:`~cardiac_dreamer.data.image_check.verify_images`.
"""
from __future__ import annotations

import filecmp
import logging
import ntpath
import os
import posixpath
import reprlib
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple, TypeVar, Union

import numpy as np

from ..errors import DataError
from ..geometry import MAX_POSE_MAGNITUDE
from ..io.fileio import os_reason, read_json, stat_path, text_problem
from ..names import TRANSITIONS_FILE

logger = logging.getLogger(__name__)

IMAGE_KEYS = ("ft1_image_path", "ft2_image_path")
LABEL_KEYS = ("at1_6dof", "action_change_6dof", "at2_6dof")
REQUIRED_KEYS = IMAGE_KEYS + LABEL_KEYS
FRAME_KEYS = ("frame_t1", "frame_t2")  # optional: the sweep's frame numbers

PathLike = Union[str, Path]
Vector = Tuple[float, ...]
T = TypeVar("T")

_SHORT = reprlib.Repr()
_SHORT.maxstring, _SHORT.maxother = 120, 60  # long enough for a real path, short enough for one line


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
    frame_t1: Optional[int] = None  # the frame numbers of the sweep (optional keys): what chains frames in order
    frame_t2: Optional[int] = None

    def where(self) -> str:
        """``"<json file>: entry <i>"``, the prefix of every error about this record."""
        return f"{self.source or self.folder}: entry {self.index}"


def shown(value: Any) -> str:
    """``repr(value)`` cut to one readable line: a hostile file can hold a megabyte-long name or a deep list."""
    return _SHORT.repr(value)


def find_patient_folders(data_dir: PathLike) -> List[str]:
    """Sorted names of the direct sub-folders of ``data_dir`` that hold a transitions file.

    An entry that may be a patient but cannot be inspected (a symlink loop, a broken link, no permission) is
    refused rather than skipped, and so is a patient folder whose name is not UTF-8: a patient must not silently
    drop out of the data, nor break a report once the run has started.
    """
    data_dir = Path(data_dir)
    _refuse_non_utf8_name(data_dir, "data directory")
    info = stat_path(data_dir, "data directory", DataError)
    if not stat.S_ISDIR(info.st_mode):
        raise DataError(f"{data_dir}: data directory is not a directory")
    try:
        children = sorted(data_dir.iterdir())
    except OSError as error:
        raise DataError(f"{data_dir}: cannot list the data directory ({os_reason(error)})") from None
    folders = [child.name for child in children if _is_patient_folder(child)]
    if not folders:
        itself = (f"; this folder holds {TRANSITIONS_FILE} itself, so it is one patient: pass the folder above it, "
                  f"{data_dir.resolve().parent}") if (data_dir / TRANSITIONS_FILE).is_file() else ""
        raise DataError(f"{data_dir}: no patient folder (no sub-folder holds {TRANSITIONS_FILE}){itself}")
    _warn_of_skipped_folders(data_dir, [child for child in children if child.name not in folders])
    return folders


_WARNED: set = set()  # (data directory, skipped folders) or a transitions file already warned of: CV folds read
# the data once each


def _warn_of_skipped_folders(data_dir: Path, others: Sequence[Path]) -> None:
    """A sub-folder without a transitions file is no patient; say so once, as a typo in the file's name would
    otherwise drop a patient without a word (hidden folders, such as a notebook's, are left out)."""
    skipped = tuple(shown(child.name) for child in others if not child.name.startswith(".") and child.is_dir())
    if skipped and (str(data_dir), skipped) not in _WARNED:
        _WARNED.add((str(data_dir), skipped))
        logger.warning("%s: %d sub-folder(s) hold no %s, so they are not read as patients: %s", data_dir,
                       len(skipped), TRANSITIONS_FILE, ", ".join(skipped))


def read_patient_records(
    data_dir: PathLike, folder: str, patient_id: Optional[str] = None, problems: Optional[List[str]] = None,
) -> List[TransitionRecord]:
    """All entries of ``data_dir/folder/transitions_dataset.json``, every path and label validated.

    A bad entry raises its :class:`DataError`; with a ``problems`` list, its message is appended there instead and
    the entry skipped, so a checker lists every bad entry of a file in one pass (a file that cannot be read at all
    still raises).
    """
    place = _PatientFolder.of(Path(data_dir), folder, folder if patient_id is None else patient_id)
    entries = _load_entries(place.json_path)
    records: List[TransitionRecord] = []
    first_seen: Dict[Tuple[Path, Path], int] = {}
    for index, entry in enumerate(entries):
        try:
            record = _parse_entry(entry, index, place)
            key = (record.image_t1, record.image_t2)
            if key in first_seen:
                raise DataError(
                    f"{record.where()}: duplicate of entry {first_seen[key]} "
                    f"(same images {shown(record.image_t1_rel)} and {shown(record.image_t2_rel)})"
                )
        except DataError as error:
            if problems is None:
                raise
            problems.append(str(error))
            continue
        first_seen[key] = index
        records.append(record)
    _warn_of_unusable_frame_numbers(entries, place)
    return records


def _warn_of_unusable_frame_numbers(entries: Sequence[Any], place: _PatientFolder) -> None:
    """One warning per file naming its first frame number that is there but no whole number >= 0: such a pair is
    read as unnumbered, and the sequence stage's "no frame numbers" would otherwise hide why."""
    if place.json_path in _WARNED:
        return
    for index, entry in enumerate(entries):
        for key in FRAME_KEYS:
            if isinstance(entry, dict) and entry.get(key) is not None and _frame_number(entry, key) is None:
                logger.warning("%s: entry %d: %s %s is not a whole number >= 0; the file's pairs with such numbers "
                               "are read as unnumbered (only model.sequence_frames and data.pair_gap_frames read "
                               "them)", place.json_path, index, key, reprlib.repr(entry[key]))
                _WARNED.add(place.json_path)
                return


def read_records(
    data_dir: PathLike,
    folders: Optional[Iterable[str]] = None,
    grouping: Optional[Mapping[str, str]] = None,
    max_pairs_per_patient: Optional[int] = None,
) -> List[TransitionRecord]:
    """Records of ``folders`` (default: every patient folder), each labelled with its patient id.

    ``grouping`` maps folder -> patient id (folders absent from it are their own patient). Every entry is
    validated and no image file may belong to two patients; then ``max_pairs_per_patient`` keeps that many
    entries of each folder, spread evenly from its first to its last (see :func:`evenly_spaced`).
    """
    folders = find_patient_folders(data_dir) if folders is None else list(folders)
    grouping = grouping or {}
    by_folder = [read_patient_records(data_dir, folder, grouping.get(folder, folder)) for folder in folders]
    refuse_images_shared_between_patients(record for records in by_folder for record in records)
    records = [record for records in by_folder for record in evenly_spaced(records, max_pairs_per_patient)]
    logger.info("read %d transitions from %d patient folders in %s", len(records), len(folders), data_dir)
    return records


def evenly_spaced(items: Sequence[T], count: Optional[int]) -> List[T]:
    """``count`` items at evenly spaced positions, the first and the last included (all items when ``count`` is
    None or not smaller). Consecutive frames of a sweep are nearly the same pose, so the first N entries would
    cover a sliver of it; N spread over the whole sweep cover all of it, the same N every time."""
    if count is None or count >= len(items):
        return list(items)
    positions = np.linspace(0, len(items) - 1, num=count).round().astype(int)  # distinct: spacing > 1
    return [items[position] for position in positions]


@dataclass(frozen=True)
class _PatientFolder:
    """What every entry of one transitions file is checked against."""

    json_path: Path  # as the user wrote the data directory, for messages
    folder: str
    patient_id: str
    directory: Path  # the resolved data directory / folder: relative image paths are joined to it
    allowed_roots: Tuple[Path, ...]  # resolved images must lie under one: the data directory, the folder's target

    @classmethod
    def of(cls, data_dir: Path, folder: str, patient_id: str) -> "_PatientFolder":
        json_path = data_dir / folder / TRANSITIONS_FILE
        try:
            data_root = data_dir.resolve()
            target = (data_root / folder).resolve()
        except (OSError, RuntimeError) as error:  # RuntimeError: a symlink loop, before Python 3.13
            raise DataError(f"{json_path}: cannot resolve the patient folder ({os_reason(error)})") from None
        return cls(json_path, folder, patient_id, data_root / folder, (data_root, target))


def _is_patient_folder(child: Path) -> bool:
    """Whether ``child`` holds a transitions file (of any kind: reading it refuses a directory or a broken link)."""
    candidate = child / TRANSITIONS_FILE
    try:
        candidate.stat()
    except NotADirectoryError:
        return False
    except FileNotFoundError:
        if child.is_symlink() and not child.exists():
            raise DataError(f"{child}: broken symbolic link in the data directory (to {os.readlink(child)})") from None
        if not os.path.lexists(candidate):
            return False
    except OSError as error:
        raise DataError(f"{child}: cannot inspect this entry of the data directory ({os_reason(error)})") from None
    _refuse_non_utf8_name(child, "patient folder")
    return True


def _refuse_non_utf8_name(path: Path, what: str) -> None:
    """Python reads a name that is not UTF-8 into unpaired surrogates, which no report, plot or JSON file can
    hold, and a control character (a newline) splits every one-line message and table row that names it;
    refuse either up front and show the name's bytes."""
    problem = text_problem(str(path))
    if problem:
        raise DataError(f"{what} {os.fsencode(path)!r}: the name {problem}; rename it (patients are named by their "
                        "folder in reports, plots and JSON files)")


def refuse_images_shared_between_patients(records: Iterable[TransitionRecord]) -> None:
    """One image under two patients would put the same picture in two splits. Refused: one file reached from
    both (a symlinked image or patient folder, seen through as paths are resolved; a hard link, the same device
    and inode) and a copy (the same labels and the same bytes: a patient folder copied under another name).
    Within one patient, sharing is normal (the t2 image of one pair is often the t1 image of the next). The
    message names the link the user made first: the entry whose image lies outside its own patient folder, not
    the patient whose file it reaches."""
    records = list(records)
    files: Dict[Path, os.stat_result] = {}
    owners: Dict[Tuple[int, int], Tuple[TransitionRecord, str]] = {}
    for record in records:
        for key, path in zip(IMAGE_KEYS, (record.image_t1, record.image_t2)):
            if path not in files:
                files[path] = stat_path(path, f"image of {record.where()}", DataError)
            info = files[path]
            owner, owner_key = owners.setdefault((info.st_dev, info.st_ino), (record, key))
            if owner.patient_id != record.patient_id:
                (link, link_key), (target, target_key) = sorted(
                    ((record, key), (owner, owner_key)), key=lambda pair: not _reaches_outside(*pair))
                written = link.source.parent / _written(link, link_key) if link.source else path
                reached, own = _image(target, target_key), _image(link, link_key)
                how = f"is a link to {reached}" if reached == own else f"is a hard link to {reached}"
                raise DataError(f"{written}: {link_key} of {link.where()} (patient {link.patient_id!r}) {how}, "
                                f"an image of patient {target.patient_id!r} ({target.where()}); {_LEAK_ADVICE}")
    _refuse_copies_between_patients(records, files)


_LEAK_ADVICE = ("one image under two patients would leak between the splits: remove one of the entries or, if both "
                "folders are scans of one patient, name them one patient in a grouping file (--grouping_file)")


def _refuse_copies_between_patients(records: Sequence[TransitionRecord], files: Mapping[Path, os.stat_result]) -> None:
    """Entries of two patients with the same labels and images of the same sizes are compared byte for byte: the
    labels and sizes make a copy cheap to find without reading every image."""
    seen: Dict[Tuple[Any, ...], TransitionRecord] = {}
    for record in records:
        key = (record.at1, record.action_change, record.at2,
               files[record.image_t1].st_size, files[record.image_t2].st_size)
        first = seen.setdefault(key, record)
        if first.patient_id != record.patient_id and all(
                _same_bytes(_image(first, image_key), _image(record, image_key)) for image_key in IMAGE_KEYS):
            raise DataError(f"{record.where()} (patient {record.patient_id!r}) is a copy of {first.where()} "
                            f"(patient {first.patient_id!r}): the same labels and, byte for byte, the same images; "
                            f"{_LEAK_ADVICE}")


def _image(record: TransitionRecord, key: str) -> Path:
    return record.image_t1 if key == IMAGE_KEYS[0] else record.image_t2


def _same_bytes(first: Path, second: Path) -> bool:
    try:
        return filecmp.cmp(first, second, shallow=False)
    except OSError as error:
        raise DataError(f"{second}: cannot read image to compare it with {first} ({os_reason(error)})") from None


def _reaches_outside(record: TransitionRecord, key: str) -> bool:
    """Whether ``record``'s image ``key`` resolves outside its own patient folder (the folder itself taken as
    written, so a symlinked patient folder counts as a link too)."""
    if record.source is None:
        return False
    folder = record.source.parent
    home = Path(os.path.realpath(folder.parent)) / folder.name
    return home not in _image(record, key).parents


def _written(record: TransitionRecord, key: str) -> str:
    """The image path of ``key`` as the transitions file writes it, with ``/`` separators."""
    raw = record.image_t1_rel if key == IMAGE_KEYS[0] else record.image_t2_rel
    return posixpath.normpath(raw.replace("\\", "/"))


def _load_entries(json_path: Path) -> List[Any]:
    entries = read_json(json_path, "transitions file", DataError)
    if not isinstance(entries, list):
        raise DataError(f"{json_path}: expected a JSON list of entries, got {type(entries).__name__}")
    if not entries:
        raise DataError(f"{json_path}: the list of entries is empty")
    return entries


def _parse_entry(entry: Any, index: int, place: _PatientFolder) -> TransitionRecord:
    where = f"{place.json_path}: entry {index}"
    if not isinstance(entry, dict):
        raise DataError(f"{where}: expected an object, got {type(entry).__name__}")
    missing = [key for key in REQUIRED_KEYS if key not in entry]
    if missing:
        raise DataError(f"{where}: missing key(s) {', '.join(missing)}")
    image_t1, image_t2 = (_resolve_image(entry[key], key, where, place) for key in IMAGE_KEYS)
    at1, action_change, at2 = (_vector(entry[key], key, where) for key in LABEL_KEYS)
    return TransitionRecord(
        patient_id=place.patient_id,
        folder=place.folder,
        index=index,
        image_t1=image_t1,
        image_t2=image_t2,
        image_t1_rel=entry[IMAGE_KEYS[0]],
        image_t2_rel=entry[IMAGE_KEYS[1]],
        at1=at1,
        action_change=action_change,
        at2=at2,
        source=place.json_path,
        frame_t1=_frame_number(entry, FRAME_KEYS[0]),
        frame_t2=_frame_number(entry, FRAME_KEYS[1]),
    )


def _frame_number(entry: Dict[str, Any], key: str) -> Optional[int]:
    """The optional frame number ``key`` when it is a non-negative whole number, else None: only the sequential
    estimator reads it (a folder without usable numbers gives it no chains), so it never stops a training."""
    value = entry.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 2**53 or value % 1:
        return None
    return int(value)


def _resolve_image(raw: Any, key: str, where: str, place: _PatientFolder) -> Path:
    """The absolute, resolved path of an existing regular file; the path must be relative, plain text, and stay
    inside the patient folder as written (and, once symlinks are resolved, inside the data directory or the
    patient folder's own target)."""
    if not isinstance(raw, str) or not raw.strip():
        raise DataError(f"{where}: {key} must be a non-empty string, got {shown(raw)}")
    refuse_unsafe_text(raw, f"{where}: {key}")
    if posixpath.isabs(raw) or ntpath.isabs(raw) or ntpath.splitdrive(raw)[0]:
        raise DataError(f"{where}: {key} {shown(raw)} is absolute; paths must be relative to the patient folder")
    relative = posixpath.normpath(raw.replace("\\", "/"))
    if relative == ".." or relative.startswith("../"):
        raise DataError(f"{where}: {key} {shown(raw)} escapes the patient folder")
    try:
        path = (place.directory / relative).resolve(strict=True)
    except FileNotFoundError:
        raise DataError(
            f"{where}: {key} image not found: {shown(raw)} (looked for {shown(str(place.directory / relative))})"
        ) from None
    except (OSError, RuntimeError) as error:  # a name too long, a symlink loop (RuntimeError before Python 3.13)
        raise DataError(f"{where}: {key} {shown(raw)} cannot be resolved ({os_reason(error)})") from None
    if not any(path == root or root in path.parents for root in place.allowed_roots):
        raise DataError(f"{where}: {key} {shown(raw)} resolves to {path}, outside the data directory")
    if not path.is_file():
        raise DataError(f"{where}: {key} {shown(raw)} is not a regular file ({path})")
    return path


def refuse_unsafe_text(text: str, what: str) -> None:
    """A :class:`DataError` ``"<what> '<text>' <problem>"`` when :func:`~cardiac_dreamer.io.fileio.text_problem`
    finds one (a NUL character, bytes that were not UTF-8, a control character)."""
    problem = text_problem(text)
    if problem:
        raise DataError(f"{what} {shown(text)} {problem}")


def _vector(raw: Any, key: str, where: str) -> Vector:
    if not isinstance(raw, list) or len(raw) != 6:
        size = f"length {len(raw)}" if isinstance(raw, list) else type(raw).__name__
        raise DataError(f"{where}: {key} must be a list of 6 numbers [x, y, z, roll, pitch, yaw], got {size}")
    for axis, value in enumerate(raw):
        if not _is_plausible_label(value):
            raise DataError(
                f"{where}: {key}[{axis}] must be a finite number within +-{MAX_POSE_MAGNITUDE:g} "
                f"(mm or degrees), got {shown(value)}"
            )
    return tuple(float(value) for value in raw)


def _is_plausible_label(value: Any) -> bool:
    """A number (bool is an int subclass, but true/false is an export bug), finite and of plausible size. The
    comparison is exact for integers too large for a float, and false for NaN."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    return -MAX_POSE_MAGNITUDE <= value <= MAX_POSE_MAGNITUDE
