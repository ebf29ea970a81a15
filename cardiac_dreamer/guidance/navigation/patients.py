"""Which phantom patients a checkpoint is navigated on, and where each came from.

A checkpoint trained on phantom data recorded its patient split and data directory; each patient folder there holds
the ``phantom.json`` that rebuilds the patient, so the held-out patients (test by default) are simulated exactly
as they were written (v3 or v4, as their ``phantom.json`` says). A checkpoint trained on other data (or whose data
directory is gone) is navigated on fresh phantom patients of the default version (v4), numbered beyond any written
patient (``phantom_101``...), which no training run has seen unless someone generated more than 100 patients; they
belong to no split, so only the default split is taken for them, and only their names. Training patients are used
only when asked for (``split="train"``).
"""
from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Sequence, Tuple, Union

from ...io.checkpoint import ModelCheckpoint
from ...io.fileio import read_json
from ...data.splits import PatientSplit, folders_by_patient
from ...errors import DataError
from ...phantom import DEFAULT_VERSION, PATIENT_FILE, TRAJECTORIES, PhantomPatient

log = logging.getLogger(__name__)

FRESH_FIRST_INDEX = 101
FRESH_COUNT = 3
FRESH_SPLIT = "test"  # the default split: fresh patients were never trained on
FRESH_SEED = 0  # the demo phantom's seed: fresh patients are new hearts of the same generator
_FRESH_NAME = re.compile(r"^phantom_(\d+)$")


@dataclass
class NavigationPatient:
    name: str
    phantom: PhantomPatient
    source: str  # where it came from, for the report
    trajectory: str = "sweep"  # how its training-like poses were drawn (phantom.json's "trajectory"): where to start


def resolve_patients(
    checkpoint: ModelCheckpoint,
    checkpoint_path: Path,
    image_size: int,
    split: str = "test",
    names: Optional[Sequence[str]] = None,
    data_dir: Optional[Union[str, os.PathLike]] = None,
) -> Tuple[List[NavigationPatient], Optional[Path]]:
    """``(patients, data directory they came from or None for fresh ones)``; DataError naming what is wrong.

    ``image_size`` is the render size of fresh patients (the checkpoint's); written patients render at the size
    they were written at, which the model's preprocessing resizes exactly as it did in training.
    """
    explicit = data_dir is not None
    recorded = data_dir if explicit else checkpoint.data_dir
    directory = Path(recorded) if recorded else None
    if explicit and not directory.is_dir():
        raise DataError(f"{directory}: data directory not found")
    if checkpoint.split is not None and directory is not None and directory.is_dir():
        patient_split, source = PatientSplit.from_dict(checkpoint.split), str(checkpoint_path)
        whole_split = patient_split.select(split, None, checkpoint.grouping, source)
        written = _phantom_folders(directory, whole_split, checkpoint.grouping)
        if written:
            chosen = patient_split.select(split, names, checkpoint.grouping, source)
            folders = [(patient, folder) for patient, folder in written if patient in chosen]
            if len(folders) < len(chosen):
                missing = sorted(set(chosen) - {patient for patient, _ in folders})
                raise DataError(f"{directory}: patient(s) {', '.join(missing)} have no {PATIENT_FILE}: only phantom "
                                "patients can be simulated")
            return [NavigationPatient(patient, PhantomPatient.from_folder(folder),
                                      f"{folder / PATIENT_FILE} ({split} split of the checkpoint)",
                                      _written_trajectory(folder))
                    for patient, folder in folders], directory
        if explicit:
            raise DataError(f"{directory}: the {split} patients ({', '.join(whole_split)}) are not phantom patients "
                            f"(no {PATIENT_FILE}); leave out --data_dir to navigate fresh phantom patients")
        why = "it was not trained on phantom data"
    else:
        why = f"its data directory {directory} is not here; give it with --data_dir to navigate its own patients"
    log.info("navigating fresh phantom patients: %s", why)
    if split != FRESH_SPLIT:
        raise DataError(f"split {split!r}: this checkpoint is navigated on fresh phantom patients, which belong to no "
                        f"split ({why}); leave the split at {FRESH_SPLIT!r}")
    return _fresh_patients(names, image_size), None


def _phantom_folders(directory: Path, patients: Sequence[str], grouping) -> List[Tuple[str, Path]]:
    """``[(patient, folder)]`` for each of ``patients`` with a folder that holds its ``phantom.json``."""
    scans = folders_by_patient(grouping) if grouping else {}
    found = []
    for patient in patients:
        written = [directory / folder for folder in scans.get(patient, [patient])
                   if (directory / folder / PATIENT_FILE).is_file()]
        if written:
            found.append((patient, written[0]))
    return found


def _written_trajectory(folder: Path) -> str:
    """The trajectory mode ``phantom.json`` records (``"sweep"``, ``"random"``...); ``"random"`` when it records none
    (written before the sweeps existed)."""
    path = folder / PATIENT_FILE
    trajectory = read_json(path, "phantom description", DataError).get("trajectory", "random")
    if trajectory not in TRAJECTORIES:
        raise DataError(f"{path}: unusable phantom description (trajectory must be one of {', '.join(TRAJECTORIES)}, "
                        f"got {trajectory!r})")
    return trajectory


def _fresh_patients(names: Optional[Sequence[str]], image_size: int) -> List[NavigationPatient]:
    """New phantom hearts for a checkpoint trained on other data. They start uniform in the box ("random"): the
    training range of real data need not hold a single pose of a phantom sweep."""
    indices = list(range(FRESH_FIRST_INDEX, FRESH_FIRST_INDEX + FRESH_COUNT))
    if names:
        parsed = [_FRESH_NAME.match(name) for name in names]
        bad = [name for name, match in zip(names, parsed) if not match or int(match.group(1)) < FRESH_FIRST_INDEX]
        if bad:  # phantom_1..100 are the hearts a written phantom holds, the demo's and maybe the training data's
            raise DataError(f"unknown patient(s) {', '.join(map(repr, bad))}: without phantom data, patients are "
                            f"fresh phantom patients named phantom_<number> from {FRESH_FIRST_INDEX} on, e.g. "
                            f"phantom_{FRESH_FIRST_INDEX}")
        indices = list(dict.fromkeys(int(match.group(1)) for match in parsed))  # each once, in the order given
    return [NavigationPatient(f"phantom_{index}", PhantomPatient(index, FRESH_SEED, image_size, DEFAULT_VERSION),
                              f"fresh phantom {DEFAULT_VERSION} patient {index} of seed {FRESH_SEED} "
                              "(generated for navigation)", trajectory="random")
            for index in indices]
