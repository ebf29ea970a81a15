"""Training pairs whose t2 lies further away along the sweep (``data.pair_gap_frames``).

Why: an export pairs frames 1-4 apart, so its moves are a fraction of a millimetre or degree (the real export's move
std: 0.3-0.7), while guidance suggests moves of 5-20. A world model trained on such pairs learns what "no change"
looks like, and its ``imagine`` planner ranks far larger moves than it ever saw. The numbered frames of a sweep
(:mod:`cardiac_dreamer.data.chains`) give every pair of frames with the move between them exactly, so each training
pair can be re-drawn with its t2 up to N frames before or after its t1. The t1 frames, and so what image-only
guidance learns from, stay the export's; validation and test keep the export's pairs. The re-drawn move is the
difference of two labelled poses, which is the export's moves chained along the sweep (what a tracker gives), so a
label-scarce run's unlabelled patients lend it no view label. Earlier frames are drawn as often as later ones: on
a sweep that converges on the view, later frames alone would make the longer moves point toward it, and the world
model would never see a move away from it.
"""
from __future__ import annotations

import bisect
import dataclasses
from typing import Dict, List, Sequence, Tuple

import numpy as np
import torch

from ..geometry import move_between
from .chains import Frame, check_one_sweep_per_numbering, sweep_segments
from .records import TransitionRecord

FrameKey = Tuple[str, str, int]  # patient, folder, frame number
Timeline = Tuple[List[int], List[Frame], int]  # a segment's frame numbers, its frames, one frame's place there


def regap_pairs(records: Sequence[TransitionRecord], max_gap_frames: int, seed: int,
                composition: str = "additive") -> List[TransitionRecord]:
    """``records`` with each t2 re-drawn: a gap of 1 to ``max_gap_frames`` frames drawn uniformly, before or after
    t1 with even odds, and the numbered frame of t1's sweep segment on that side nearest t1 + gap, within
    ``max_gap_frames``; the move is the one between the two labelled poses under ``composition``. A record
    without frame numbers, or with no frame of its segment on the side drawn, is kept as it is;
    ``max_gap_frames`` 0 keeps every record. Deterministic in ``seed``. A folder that numbers two sweeps alike is
    refused (DataError), as the sequence stage refuses it."""
    if not max_gap_frames:
        return list(records)
    check_one_sweep_per_numbering(records, "data.pair_gap_frames")
    timelines = _timelines(records)
    rng = np.random.default_rng(seed)
    gaps = rng.integers(1, max_gap_frames + 1, len(records)) * rng.choice([-1, 1], len(records))
    chosen = {}  # position in records -> the frame its t2 becomes
    for position, (record, gap) in enumerate(zip(records, gaps)):
        reach = _frames_within(timelines, record, max_gap_frames, later=gap > 0)
        if reach:
            chosen[position] = min(reach, key=lambda other: abs(other.number - record.frame_t1 - gap))
    if not chosen:
        return list(records)
    moves = move_between(torch.tensor([records[position].at1 for position in chosen], dtype=torch.float64),
                         torch.tensor([frame.pose for frame in chosen.values()], dtype=torch.float64), composition)
    regapped = list(records)
    for (position, frame), move in zip(chosen.items(), moves.tolist()):
        regapped[position] = dataclasses.replace(records[position], image_t2=frame.image, image_t2_rel=frame.image_rel,
                                                 at2=frame.pose, action_change=tuple(move), frame_t2=frame.number)
    return regapped


def _timelines(records: Sequence[TransitionRecord]) -> Dict[FrameKey, Timeline]:
    """Each numbered frame's segment (:func:`~.chains.sweep_segments`: its frames in frame order) and its place
    there."""
    timelines: Dict[FrameKey, Timeline] = {}
    for segment in sweep_segments(records):
        numbers = [frame.number for frame in segment]
        timelines.update(((frame.patient_id, frame.folder, frame.number), (numbers, segment, position))
                         for position, frame in enumerate(segment))
    return timelines


def _frames_within(timelines: Dict[FrameKey, Timeline], record: TransitionRecord, max_gap_frames: int,
                   later: bool) -> List[Frame]:
    """The frames of ``record``'s t1 segment at most ``max_gap_frames`` after t1 (``later``) or before it."""
    if record.frame_t1 is None:
        return []
    numbers, frames, position = timelines[(record.patient_id, record.folder, record.frame_t1)]
    if later:
        return frames[position + 1:bisect.bisect_right(numbers, record.frame_t1 + max_gap_frames, lo=position + 1)]
    return frames[bisect.bisect_left(numbers, record.frame_t1 - max_gap_frames, hi=position):position]
