"""The guide's pre-training checklist as a command: ``cardiac-train --check_data`` checks a data directory against
every rule training applies and summarises it, without training or writing anything.

It runs the readers training runs (records; every image checked by :mod:`~cardiac_dreamer.data.image_check`, as
training does before it writes anything; grouping, split, label consistency), so a directory that passes here loads
in training, and fails with the same messages when it does not. Problems are collected rather than stopping at the
first, so one pass over a broken export lists what to fix: the grouping file is read, every entry of every patient
folder, images shared between patients looked for, and the images of every good entry training keeps decoded
(``data.max_pairs_per_patient`` keeps some); each problem is logged, and one :class:`DataError` names how many there
are and the first. Split problems are reported once the records are clean, because the split is computed from them.
"""
from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple, TypeVar

import numpy as np

from .config import DataConfig
from .data.chains import check_frame_numbers
from .data.consistency import ConsistencyReport, check_label_consistency
from .data.image_check import scan_images
from .data.normalization import unvarying_pose_axes
from .data.transforms import TWELVE_BIT_MAX
from .data.prepare import PreparedData, folder_grouping, prepare_data
from .data.records import (
    TransitionRecord, evenly_spaced, find_patient_folders, read_patient_records, refuse_images_shared_between_patients,
)
from .data.splits import SPLIT_NAMES, PatientSplit, cross_validation_folds, folders_by_patient
from .errors import DataError
from .geometry import AXIS_NAMES, AXIS_UNITS
from .names import counted

logger = logging.getLogger(__name__)
T = TypeVar("T")

MAX_LOGGED_PROBLEMS = 20  # a directory of missing images should not flood the terminal
LABELS = ("at1", "action_change", "at2")  # record fields, mm and degrees


@dataclass
class DataReport:
    """What a valid data directory holds, as training will see it."""

    data_dir: Path
    config: DataConfig
    prepared: PreparedData
    folders: List[str]
    image_sizes: Counter  # (width, height) -> number of distinct image files
    image_modes: Counter  # PIL mode -> number of distinct image files
    label_ranges: Dict[str, List[Tuple[float, float]]]  # label -> per-axis (min, max), mm and degrees
    consistency: ConsistencyReport
    unvarying_axes: List[str]  # the pose axes the training labels never change, e.g. "roll (always 0 deg)"
    composition: Optional[str] = None  # the model's composition mode, when the caller knows it
    dim_images: int = 0  # 16-bit files holding 12-bit values: nearly black once scaled
    first_dim_image: str = ""  # the first of them
    folds: List[PatientSplit] = field(default_factory=list)  # data.cv_folds: the folds --cv trains
    inner_val: List[List[str]] = field(default_factory=list)  # and the patient each fold selects on

    @property
    def num_pairs(self) -> int:
        return sum(self.prepared.samples_per_patient.values())

    def summary(self) -> str:
        """A few lines for a terminal: patients, pairs, images, label ranges, composition and the split."""
        cfg, prepared = self.config, self.prepared
        patients = prepared.samples_per_patient
        lines = [
            f"data directory: {self.data_dir} (every check passed)",
            f"patients: {len(patients)} in {len(self.folders)} folders; pairs: {self.num_pairs}",
        ]
        folders_of = folders_by_patient(prepared.grouping)
        for patient, pairs in patients.items():
            folders = folders_of.get(patient, [patient])
            grouped = f" (folders {', '.join(folders)})" if folders != [patient] else ""
            lines.append(f"  {patient}: {counted(pairs, 'pair')}{grouped}")
        if cfg.max_pairs_per_patient:
            used = counted(cfg.max_pairs_per_patient, "pair")
            lines.append(f"  training will use {used} of each folder, spread evenly over it")
        lines.append(f"images: {sum(self.image_sizes.values())} files, "
                     f"sizes {_most_common(f'{w}x{h}' for (w, h) in self.image_sizes.elements())}, "
                     f"modes {_most_common(self.image_modes.elements())}; resized to {cfg.image_size}x{cfg.image_size}")
        if any(width != height for width, height in self.image_sizes):
            lines.append("  note: non-square images are stretched to a square")
        if self.dim_images:
            lines.append(f"  warning: {self.dim_images} 16-bit images hold no value above {TWELVE_BIT_MAX} (12-bit "
                         "data?): 16-bit images are scaled by 1/257, so these train nearly black (gray 16 of 255 at "
                         f"most; the first: {self.first_dim_image}); export them over the full 16-bit range, or "
                         "as 8-bit")
        lines.append("labels, min..max (mm, deg):")
        for label, ranges in self.label_ranges.items():
            cells = "  ".join(f"{axis} {low:.4g}..{high:.4g}"
                              for axis, (low, high) in zip(_axis_labels(), ranges))
            lines.append(f"  {label:<14}{cells}")
        if self.unvarying_axes:
            lines.append(f"  warning: the poses never change on {', '.join(self.unvarying_axes)}: a model learns "
                         "nothing there")
        lines.append(f"composition: {self.consistency.summary()}")
        if self.composition is not None and not self.consistency.matches(self.composition):
            lines.append(f"  warning: model.composition is {self.composition}; the labels do not follow it")
        if self.folds:
            lines += self._fold_lines()
            return "\n".join(lines)
        how = "manual" if cfg.manual_splits else f"automatic, seed {cfg.split_seed}"
        lines.append(f"split ({how}):")
        for name in SPLIT_NAMES:
            members = getattr(prepared.split, name)
            pairs = sum(patients.get(p, 0) for p in members)
            lines.append(f"  {name:<5} {counted(len(members), 'patient')}, {counted(pairs, 'pair')}: "
                         f"{', '.join(members) or '-'}")
        unused = sorted(set(patients) - set(prepared.split.patients()))
        if unused:
            lines.append(f"  unused (in no split): {', '.join(unused)}")
        return "\n".join(lines)

    def _fold_lines(self) -> List[str]:
        patients = self.prepared.samples_per_patient
        lines = [f"cross-validation ({len(self.folds)} folds, seed {self.config.split_seed}):"]
        alone = []  # folds whose model learns from one person
        for index, (fold, inner) in enumerate(zip(self.folds, self.inner_val), start=1):
            pairs = sum(patients.get(p, 0) for p in fold.val)
            trained = len(fold.train) - len(inner)
            lines.append(f"  fold {index}: reports {', '.join(fold.val)} ({counted(pairs, 'pair')}); selects on "
                         f"{', '.join(inner)}; trains on {counted(trained, 'patient')}")
            if trained == 1:
                alone.append(str(index))
        if self.folds[0].test:
            lines.append(f"  held out of every fold: {', '.join(self.folds[0].test)}")
        if alone:
            which = f"fold {alone[0]} trains" if len(alone) == 1 else f"folds {', '.join(alone)} train"
            lines.append(f"  warning: {which} on one patient, whose anatomy says little about the next patient's; "
                         "fewer folds (--cv K) train each on more")
        return lines


def check_data(cfg: DataConfig, composition: Optional[str] = None, sequence_frames: int = 0) -> DataReport:
    """Check ``cfg.data_dir`` against every data rule; a :class:`DataReport` when it passes.

    Raises one :class:`DataError` naming the number of problems and the first (each is logged); a missing data
    directory or one without patient folders stops at once. ``composition`` (the model's) adds a mismatch warning;
    ``sequence_frames`` (``model.sequence_frames``) the frame numbers the sequence stage needs.
    """
    data_dir = Path(cfg.data_dir)
    folders = find_patient_folders(data_dir)
    problems: List[str] = []
    grouping = _collected(problems, folder_grouping, cfg, folders) or {}
    by_folder: List[List[TransitionRecord]] = []
    for folder in folders:
        by_folder.append(_collected(problems, read_patient_records, data_dir, folder, grouping.get(folder, folder),
                                    problems=problems) or [])
    records = [record for records in by_folder for record in records]
    _collected(problems, refuse_images_shared_between_patients, records)
    # training decodes the images of the entries it keeps (data.max_pairs_per_patient spreads them over a folder)
    images = scan_images([record for records in by_folder
                          for record in evenly_spaced(records, cfg.max_pairs_per_patient)], cfg.image_size)
    problems.extend(images.problems)
    folds: List[PatientSplit] = []
    inner: List[List[str]] = []
    if not problems:
        try:
            if cfg.cv_folds:  # --cv's folds, not the single run's split
                folds, inner = cross_validation_folds(cfg.cv_folds, cfg.split_seed, grouping, cfg.test_patients)
            prepared = prepare_data(cfg, folds[0] if folds else None, composition=composition or "additive")
            if sequence_frames:
                check_frame_numbers(prepared.sequence_records(), sequence_frames, cfg.data_dir)
        except DataError as error:
            problems.append(str(error))
    if problems:
        _raise(problems, data_dir)
    return DataReport(
        data_dir=data_dir.resolve(),
        config=cfg,
        prepared=prepared,
        folders=folders,
        image_sizes=images.sizes,
        image_modes=images.modes,
        dim_images=images.dim,
        first_dim_image=images.first_dim,
        label_ranges=_label_ranges(records),
        consistency=check_label_consistency(records),
        unvarying_axes=unvarying_pose_axes(prepared.labelled_training_records()),  # what training warns of
        composition=composition,
        folds=folds,
        inner_val=inner,
    )


def _collected(found: List[str], check: Callable[..., T], *args, **kwargs) -> Optional[T]:
    """``check(*args, **kwargs)``, or None with its DataError appended to ``found``: one pass lists them all."""
    try:
        return check(*args, **kwargs)
    except DataError as error:
        found.append(str(error))
        return None


def _label_ranges(records: Sequence[TransitionRecord]) -> Dict[str, List[Tuple[float, float]]]:
    ranges = {}
    for label in LABELS:
        values = np.asarray([getattr(record, label) for record in records], dtype=np.float64)  # [N, 6]
        ranges[label] = [(float(low), float(high)) for low, high in zip(values.min(0), values.max(0))]
    return ranges


def _axis_labels() -> List[str]:
    return [f"{axis}_{unit}" for axis, unit in zip(AXIS_NAMES, AXIS_UNITS)]


def _most_common(values) -> str:
    """``"64x64 (40), 128x128 (2)"``: the most common first, at most four."""
    common = Counter(values).most_common()
    shown = ", ".join(f"{value} ({count})" for value, count in common[:4])
    return shown + (f", {len(common) - 4} more" if len(common) > 4 else "")


def _raise(problems: List[str], data_dir: Path) -> None:
    """One problem is the error itself; several are logged one per line, and the error names the first."""
    if len(problems) == 1:
        raise DataError(problems[0])
    for problem in problems[:MAX_LOGGED_PROBLEMS]:
        logger.error("%s", problem)
    if len(problems) > MAX_LOGGED_PROBLEMS:
        logger.error("... and %s", counted(len(problems) - MAX_LOGGED_PROBLEMS, "more problem"))
    raise DataError(f"{problems[0]} (and {counted(len(problems) - 1, 'more problem')} in {data_dir}, each logged "
                    "above)")
