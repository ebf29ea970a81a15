"""Which phantom patients a checkpoint is navigated on, and where each came from.

A checkpoint trained on phantom data recorded its patient split and data directory; each patient folder there holds
the ``phantom.json`` that rebuilds the patient, so the held-out patients (test by default) are simulated exactly
as they were written (v3 or v4, as their ``phantom.json`` says). A checkpoint trained on other data (or whose data
directory is gone) is navigated on fresh phantom patients of the default version (v4), numbered beyond any written
patient (``phantom_101``...), which no training run has seen unless someone generated more than 100 patients.
Training patients are used only when asked for (``split="train"``).
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
        chosen = PatientSplit.from_dict(checkpoint.split).select(split, names, checkpoint.grouping,
                                                                  str(checkpoint_path))
        folders = _phantom_folders(directory, chosen, checkpoint.grouping)
        if folders:
            return [NavigationPatient(patient, PhantomPatient.from_folder(folder),
                                      f"{folder / PATIENT_FILE} ({split} split of the checkpoint)",
                                      _written_trajectory(folder))
                    for patient, folder in folders], directory
        if explicit:
            raise DataError(f"{directory}: the {split} patients ({', '.join(chosen)}) are not phantom patients "
                            f"(no {PATIENT_FILE}); leave out --data_dir to navigate fresh phantom patients")
        log.info("the checkpoint was not trained on phantom data: navigating fresh phantom patients")
    else:
        log.info("the checkpoint's data directory %s is not here: navigating fresh phantom patients", directory)
    return _fresh_patients(names, image_size), None


def _phantom_folders(directory: Path, patients: Sequence[str], grouping) -> List[Tuple[str, Path]]:
    """``[(patient, folder)]`` when every patient has a phantom folder, ``[]`` when none has; DataError if some."""
    scans = folders_by_patient(grouping) if grouping else {}
    found = []
    for patient in patients:
        written = [directory / folder for folder in scans.get(patient, [patient])
                   if (directory / folder / PATIENT_FILE).is_file()]
        if written:
            found.append((patient, written[0]))
    if found and len(found) < len(patients):
        missing = sorted(set(patients) - {patient for patient, _ in found})
        raise DataError(f"{directory}: patient(s) {', '.join(missing)} have no {PATIENT_FILE}: only phantom "
                        "patients can be simulated")
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
        bad = [name for name, match in zip(names, parsed) if not match or int(match.group(1)) < 1]
        if bad:
            raise DataError(f"unknown patient(s) {', '.join(bad)}: without phantom data, patients are fresh "
                            f"phantom patients named phantom_<number>, e.g. phantom_{FRESH_FIRST_INDEX}")
        indices = [int(match.group(1)) for match in parsed]
    return [NavigationPatient(f"phantom_{index}", PhantomPatient(index, FRESH_SEED, image_size, DEFAULT_VERSION),
                              f"fresh phantom {DEFAULT_VERSION} patient {index} of seed {FRESH_SEED} "
                              "(generated for navigation)", trajectory="random")
            for index in indices]
