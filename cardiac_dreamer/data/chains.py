"""Sweeps as timelines of frames, and the chains of the last K frames the sequential estimator learns from.

A pair ``(t1, t2)`` of a transitions file labels two frames of a sweep with their poses (at1, at2 = at1 + move), and
exports number the frames (``frame_t1``, ``frame_t2``). Gathering the frames of one folder by number gives the
sweep as the sonographer made it; the move between any two of its frames follows from their poses exactly, so a
chain's moves are consistent with its labels.

What a chain never does: mix patients or folders (each folder is its own timeline), cross the split (it is built
from one split's records), or bridge a gap (consecutive frames more than :data:`MAX_FRAME_STEP` apart start a new
segment: the probe's path in between is unknown). Records without frame numbers give no frames.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Mapping, Sequence, Tuple

import numpy as np

from ..errors import DataError
from .consistency import TOL_MM
from .records import TransitionRecord

logger = logging.getLogger(__name__)

MAX_FRAME_STEP = 8  # frames (about a quarter second at 30 per second): a longer jump breaks a chain


@dataclass(frozen=True)
class Frame:
    """One frame of a sweep: its image (resolved, and as the transitions file writes it) and its pose (at, mm and
    degrees)."""

    patient_id: str
    folder: str
    number: int
    image: Path
    pose: Tuple[float, ...]
    image_rel: str = ""


@dataclass(frozen=True)
class Chains:
    """``frames`` in timeline order, and ``index [N, K]``: row n is a current frame then the K-1 frames before it
    in its segment, most recent first, -1 where the segment has no such frame. Every frame is current once."""

    frames: List[Frame]
    index: np.ndarray

    def __len__(self) -> int:
        return len(self.index)


def sweep_segments(records: Sequence[TransitionRecord]) -> List[List[Frame]]:
    """The frames of each folder in frame order, cut into segments at gaps; a frame two pairs share is taken from
    the first pair naming it (its t1 image first, the image the frame was labelled with as t1)."""
    by_folder: Dict[Tuple[str, str], Dict[int, Frame]] = {}
    for record in records:
        frames = by_folder.setdefault((record.patient_id, record.folder), {})
        for number, image, image_rel, pose in ((record.frame_t1, record.image_t1, record.image_t1_rel, record.at1),
                                               (record.frame_t2, record.image_t2, record.image_t2_rel, record.at2)):
            if number is not None and number not in frames:
                frames[number] = Frame(record.patient_id, record.folder, number, image, pose, image_rel)
    segments: List[List[Frame]] = []
    for key in sorted(by_folder):
        ordered = [by_folder[key][number] for number in sorted(by_folder[key])]
        start = 0
        for position in range(1, len(ordered) + 1):
            if position == len(ordered) or ordered[position].number - ordered[position - 1].number > MAX_FRAME_STEP:
                segments.append(ordered[start:position])
                start = position
    return segments


def build_chains(records: Sequence[TransitionRecord], frames: int) -> Chains:
    """Chains of ``frames`` (K >= 1) frames from ``records`` (one split's), see :class:`Chains`."""
    flat: List[Frame] = []
    rows: List[np.ndarray] = []
    for segment in sweep_segments(records):
        start = len(flat)
        flat.extend(segment)
        positions = np.arange(len(segment))[:, None] - np.arange(frames)[None, :]  # [n, K]: j, j-1, ...
        rows.append(np.where(positions >= 0, positions + start, -1))
    index = np.concatenate(rows) if rows else np.zeros((0, frames), dtype=np.int64)
    return Chains(flat, index.astype(np.int64))


def check_frame_numbers(records: Mapping[str, Sequence[TransitionRecord]], frames: int, data_dir) -> None:
    """Refuse data whose training or validation patients (``records["train"]``, ``["val"]``) hold no numbered
    frames to chain, naming the patients without numbers, and say which patients are left out for having none.
    Reads no image: cheap enough to run before training and in ``--check_data``."""
    for split in records.values():
        check_one_sweep_per_numbering(split, "model.sequence_frames")
    unnumbered = {name: sorted({record.patient_id for record in split
                                if record.frame_t1 is None or record.frame_t2 is None})
                  for name, split in records.items()}
    empty = [name for name, split in records.items() if not len(build_chains(split, frames))]
    if empty:
        names = {"train": "training", "val": "validation"}
        missing = ", ".join(patient for name in empty for patient in unnumbered[name]) or "none of its pairs chain"
        raise DataError(f"{data_dir}: model.sequence_frames needs frame numbers (frame_t1, frame_t2 in the "
                        f"transitions files); the {' and '.join(names[name] for name in empty)} patients have none "
                        f"({missing})")
    left_out = sorted(set().union(*unnumbered.values()))
    if left_out:
        logger.warning("model.sequence_frames: pairs without frame numbers are left out of the sequence stage "
                       "(patients %s)", ", ".join(left_out))


def check_one_sweep_per_numbering(records: Sequence[TransitionRecord], setting: str) -> None:
    """Refuse a folder that labels one frame number with two poses (two sweeps numbered alike): ``setting``, which
    joins a folder's frames by number, would join the two sweeps."""
    renumbered = renumbered_frame(records)
    if renumbered:
        raise DataError(f"{renumbered}: {setting} joins a folder's frames by number, so one folder holds one sweep "
                        "(number a second sweep's frames apart, or give it its own folder)")


def renumbered_frame(records: Sequence[TransitionRecord]) -> str:
    """The first frame a folder labels with two poses (two sweeps numbered alike), described; "" when none. Pairs
    sharing a frame label it alike, to the export's rounding."""
    first: Dict[Tuple[str, str, int], Tuple[Tuple[float, ...], str]] = {}
    for record in records:
        for number, pose in ((record.frame_t1, record.at1), (record.frame_t2, record.at2)):
            if number is None:
                continue
            seen, where = first.setdefault((record.patient_id, record.folder, number), (pose, record.where()))
            if max(abs(a - b) for a, b in zip(seen, pose)) > TOL_MM:
                return f"{record.where()}: frame {number} has another pose than in {where}"
    return ""
