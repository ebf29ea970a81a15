"""Training pairs whose t2 lies further along the sweep (``data.pair_gap_frames``).

Why: an export pairs frames 1-4 apart, so its moves are a fraction of a millimetre or degree (the real export's move
std: 0.3-0.7), while guidance suggests moves of 5-20. A world model trained on such pairs learns what "no change"
looks like, and its ``imagine`` planner ranks far larger moves than it ever saw. The numbered frames of a sweep
(:mod:`cardiac_dreamer.data.chains`) give every pair of frames with the move between them exactly, so each training
pair can be re-drawn with its t2 up to N frames after its t1. The t1 frames, and so what image-only guidance learns
from, stay the export's; validation and test keep the export's pairs.
"""
from __future__ import annotations

import bisect
import dataclasses
from pathlib import Path
from typing import Dict, List, Sequence, Tuple

import numpy as np
import torch

from ..geometry import move_between
from .chains import sweep_segments
from .records import TransitionRecord

FrameKey = Tuple[str, str, int]  # patient, folder, frame number
Frame = Tuple[int, Path, str, Tuple[float, ...]]  # number, image, image as written, pose
Timeline = Tuple[List[int], List[Frame], int]  # a segment's frame numbers, its frames, one frame's place there


def regap_pairs(records: Sequence[TransitionRecord], max_gap_frames: int, seed: int,
                composition: str = "additive") -> List[TransitionRecord]:
    """``records`` with each t2 re-drawn: a gap drawn uniformly from 1 to ``max_gap_frames`` frames, and the
    numbered frame of t1's sweep segment nearest t1 + gap that lies after t1 within ``max_gap_frames`` (the
    move between the two labelled poses under ``composition``). A record without frame numbers, or with no later
    frame in reach, is kept as it is; ``max_gap_frames`` 0 keeps every record. Deterministic in ``seed``."""
    if not max_gap_frames:
        return list(records)
    timelines = _timelines(records)
    rng = np.random.default_rng(seed)
    gaps = rng.integers(1, max_gap_frames + 1, len(records))
    regapped = []
    for record, gap in zip(records, gaps):
        reach = _frames_after(timelines, record, max_gap_frames)
        if not reach:
            regapped.append(record)
            continue
        number, image, image_rel, pose = min(reach, key=lambda frame: abs(frame[0] - record.frame_t1 - gap))
        move = move_between(torch.tensor(record.at1, dtype=torch.float64), torch.tensor(pose, dtype=torch.float64),
                            composition)
        regapped.append(dataclasses.replace(record, image_t2=image, image_t2_rel=image_rel, at2=pose,
                                            action_change=tuple(move.tolist()), frame_t2=number))
    return regapped


def _timelines(records: Sequence[TransitionRecord]) -> Dict[FrameKey, Timeline]:
    """Each numbered frame's segment (its frames in frame order) and its place there;
    image and pose as the first pair naming the frame gives them (:func:`~.chains.sweep_segments`'s rule)."""
    relative: Dict[FrameKey, str] = {}
    for record in records:
        for number, image_rel in ((record.frame_t1, record.image_t1_rel), (record.frame_t2, record.image_t2_rel)):
            if number is not None:
                relative.setdefault((record.patient_id, record.folder, number), image_rel)
    timelines: Dict[FrameKey, Timeline] = {}
    for segment in sweep_segments(records):
        keys = [(frame.patient_id, frame.folder, frame.number) for frame in segment]
        frames = [(frame.number, frame.image, relative[key], frame.pose) for frame, key in zip(segment, keys)]
        numbers = [frame.number for frame in segment]
        timelines.update((key, (numbers, frames, position)) for position, key in enumerate(keys))
    return timelines


def _frames_after(timelines: Dict[FrameKey, Timeline], record: TransitionRecord,
                  max_gap_frames: int) -> List[Frame]:
    """The frames of ``record``'s t1 segment after t1 and at most ``max_gap_frames`` later."""
    if record.frame_t1 is None:
        return []
    numbers, frames, position = timelines[(record.patient_id, record.folder, record.frame_t1)]
    end = bisect.bisect_right(numbers, record.frame_t1 + max_gap_frames, lo=position + 1)
    return frames[position + 1:end]
