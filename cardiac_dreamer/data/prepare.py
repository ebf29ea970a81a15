"""From a DataConfig to records split by patient and normalization statistics fitted on the training patients.

This is the one place that strings records -> grouping -> split -> statistics together, so training, evaluation
and cross-validation all see the data the same way. It only reads: nothing is written into the data folder.
"""
from __future__ import annotations

import logging
import random
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from ..config import DataConfig
from ..errors import DataError
from ..geometry import AXIS_NAMES, AXIS_UNITS
from ..names import counted
from .dataset import TransitionsDataset
from .normalization import NormalizationStats
from .pair_gaps import regap_pairs
from .records import TransitionRecord, find_patient_folders, read_records, shown
from .splits import SPLIT_NAMES, PatientSplit, automatic_split, encoding_hint, look_alike_across_splits, \
    manual_split, read_grouping

logger = logging.getLogger(__name__)


@dataclass
class PreparedData:
    """Records of each split (``"train"``, ``"val"``, ``"test"``) as exported, the pairs the model trains on, the
    split, and the training statistics (of the pairs the model trains on)."""

    records: Dict[str, List[TransitionRecord]]
    training_pairs: List[TransitionRecord]  # records["train"], each t2 re-drawn when data.pair_gap_frames is set
    split: PatientSplit
    stats: NormalizationStats
    samples_per_patient: Dict[str, int]  # every patient on disk, used or not
    grouping: Dict[str, str] = field(default_factory=dict)  # folder -> patient id
    labelled_patients: Optional[List[str]] = None  # label-scarce runs: the training patients whose labels count

    def labelled_training_records(self) -> List[TransitionRecord]:
        """The training records whose labels count: all of them, or in a label-scarce run the labelled patients'
        (what the baselines and the sequence stage learn from, so they have the labels the model had)."""
        labelled = self.labelled_patients
        return [record for record in self.records["train"] if labelled is None or record.patient_id in labelled]

    def sequence_records(self) -> Dict[str, List[TransitionRecord]]:
        """What the sequence stage fits on (the labelled training records) and selects on (the validation
        patients')."""
        return {"train": self.labelled_training_records(), "val": list(self.records.get("val", []))}


def prepare_data(cfg: DataConfig, split: Optional[PatientSplit] = None,
                 grouping: Optional[Dict[str, str]] = None, composition: str = "additive") -> PreparedData:
    """Read and validate every patient folder of ``cfg.data_dir`` and split them by patient.

    The split comes from ``cfg`` (manual lists or a seeded automatic split) unless one is given, e.g. a fold of
    :func:`~cardiac_dreamer.data.kfold_splits` or the split stored in a checkpoint; a given split must only name
    patients that exist. ``grouping`` (a checkpoint's, ``{folder: patient_id}``) replaces ``cfg.grouping_file``.
    Statistics are fitted on the pairs the model trains on (pose statistics on the labelled ones only, in
    label-scarce runs): a new model takes them, a trained one carries its own. ``composition`` (the model's) turns
    two poses into the move between them where ``cfg.pair_gap_frames`` re-draws the training pairs.
    """
    records, grouping = read_grouped_records(cfg, grouping)
    patients = sorted(set(grouping.values()))

    if split is None:
        split = _split_from_config(cfg, patients, grouping)
    else:
        missing = sorted(set(split.patients()) - set(patients))
        if missing:
            raise DataError(f"{cfg.data_dir}: the split names patient(s) not on disk: {', '.join(missing)}"
                            f"{encoding_hint(missing, patients, 'the data directory')}")

    split_of = split.split_by_patient()
    by_split = {name: [r for r in records if split_of.get(r.patient_id) == name] for name in SPLIT_NAMES}
    labelled = choose_labelled_patients(cfg, split)
    training_pairs = regap_pairs(by_split["train"], cfg.pair_gap_frames, cfg.split_seed, composition)
    stats = NormalizationStats.fit(training_pairs, labelled)
    for name in SPLIT_NAMES:
        logger.info("%s: %s, %s", name, counted(len(getattr(split, name)), "patient"),
                    counted(len(by_split[name]), "pair"))
    _warn_of_look_alikes(split)
    if cfg.pair_gap_frames:
        _log_regapped(cfg.pair_gap_frames, by_split["train"], training_pairs)
    return PreparedData(
        records=by_split,
        training_pairs=training_pairs,
        split=split,
        stats=stats,
        samples_per_patient=dict(sorted(Counter(r.patient_id for r in records).items())),
        grouping=grouping,
        labelled_patients=labelled,
    )


def _warn_of_look_alikes(split: PatientSplit) -> None:
    """One warning for patients in two splits whose names look like two scans of one person."""
    pairs = look_alike_across_splits(split)
    if pairs:
        listed = "; ".join(f"{shown(a)} ({split_a}) and {shown(b)} ({split_b})" for a, split_a, b, split_b in pairs[:3])
        more = f" and {len(pairs) - 3} more pairs" if len(pairs) > 3 else ""
        logger.warning("patients %s%s have names that differ only in case, accent encoding or a scan suffix: if they "
                       "are one person, the model is scored on someone it trained on; give a grouping file "
                       "(--grouping_file, {folder: patient_id}) that maps their folders to one patient", listed, more)


def read_grouped_records(cfg: DataConfig, recorded: Optional[Dict[str, str]] = None,
                         ) -> Tuple[List[TransitionRecord], Dict[str, str]]:
    """Every record of ``cfg.data_dir``, validated, and the grouping ``{folder: patient_id}`` (folders the grouping
    does not name are their own patient); cross-validation deals these patient ids into folds.

    The grouping is ``recorded`` when given (a checkpoint's: it still holds once the data and its grouping file
    have moved), else ``cfg.grouping_file``'s."""
    folders = find_patient_folders(cfg.data_dir)
    if recorded is not None:
        grouping = {folder: recorded.get(folder, folder) for folder in folders}
    else:
        grouping = folder_grouping(cfg, folders)
    return read_records(cfg.data_dir, folders, grouping, cfg.max_pairs_per_patient), grouping


def folder_grouping(cfg: DataConfig, folders: Sequence[str]) -> Dict[str, str]:
    """``{folder: patient_id}`` from ``cfg.grouping_file``, every folder its own patient without one."""
    return read_grouping(_grouping_path(cfg), folders) if cfg.grouping_file else {folder: folder for folder in folders}


def build_datasets(
    prepared: PreparedData, cfg: DataConfig, normalize_images: bool = True
) -> Dict[str, TransitionsDataset]:
    """One dataset per non-empty split, all standardized with the training statistics.

    The image cache budget is shared: train takes what it needs first, then val, then test.
    """
    datasets: Dict[str, TransitionsDataset] = {}
    budget_mb = float(cfg.cache_budget_mb)
    for name in SPLIT_NAMES:
        if not prepared.records[name]:
            continue
        datasets[name] = dataset_from_config(
            prepared.training_pairs if name == "train" else prepared.records[name], cfg,
            normalize_images=normalize_images, cache_budget_mb=budget_mb,
            labelled_patients=prepared.labelled_patients if name == "train" else None,
        )
        budget_mb -= datasets[name].cache_mb
    return datasets


def dataset_from_config(
    records: Sequence[TransitionRecord], cfg: DataConfig, normalize_images: bool = False,
    cache_budget_mb: Optional[float] = None, labelled_patients: Optional[Sequence[str]] = None,
) -> TransitionsDataset:
    """The dataset of ``records`` at ``cfg``'s image size, its images kept where ``cfg`` says (memory cache within
    ``cache_budget_mb``, default ``cfg.cache_budget_mb``; disk cache). Images stay uint8 unless ``normalize_images``:
    the trainer and the evaluator convert them on the device."""
    return TransitionsDataset(
        records,
        image_size=cfg.image_size,
        cache_images=cfg.cache_images,
        cache_budget_mb=cfg.cache_budget_mb if cache_budget_mb is None else cache_budget_mb,
        normalize_images=normalize_images,
        labelled_patients=labelled_patients,
        disk_cache=cfg.disk_cache,
        disk_cache_dir=cfg.disk_cache_dir,
    )


def _log_regapped(gap_frames: int, exported: Sequence[TransitionRecord], trained: Sequence[TransitionRecord]) -> None:
    """Say how many training pairs ``data.pair_gap_frames`` re-drew and their moves' std; warn when it re-drew none
    (no frame numbers, or kept entries too far apart to chain), since the setting then does nothing."""
    moved = sum(pair.frame_t2 != record.frame_t2 for pair, record in zip(trained, exported))
    if not moved:
        logger.warning("data.pair_gap_frames %d: no training pair has a numbered frame of its sweep within reach "
                       "(frame_t1 / frame_t2 missing, or the entries kept too far apart), so it trains on the "
                       "export's pairs", gap_frames)
        return
    spread = np.std([pair.action_change for pair in trained], axis=0)
    logger.info("data.pair_gap_frames %d: %d of %d training pairs take another t2 of their sweep; move std %s",
                gap_frames, moved, len(trained),
                ", ".join(f"{name} {value:.1f} {unit}" for name, value, unit in zip(AXIS_NAMES, spread, AXIS_UNITS)))


def choose_labelled_patients(cfg: DataConfig, split: PatientSplit) -> Optional[List[str]]:
    """The training patients whose labels count: all (None) unless ``label_fraction`` < 1, then a seeded choice
    of ``round(fraction * patients)`` of them, at least one."""
    if cfg.label_fraction >= 1.0:
        return None
    count = max(1, round(cfg.label_fraction * len(split.train)))
    return sorted(random.Random(cfg.split_seed).sample(sorted(split.train), count))


def _split_from_config(cfg: DataConfig, patients: List[str], grouping: Dict[str, str]) -> PatientSplit:
    if cfg.manual_splits:
        return manual_split(patients, cfg.train_patients, cfg.val_patients, cfg.test_patients, grouping)
    return automatic_split(patients, cfg.train_ratio, cfg.val_ratio, cfg.test_ratio, cfg.split_seed)


def _grouping_path(cfg: DataConfig) -> Path:
    """The grouping file as written, or, when that path does not exist, the same name inside the data dir."""
    path = Path(cfg.grouping_file)
    inside = Path(cfg.data_dir) / path
    return inside if not path.exists() and not path.is_absolute() and inside.exists() else path
