"""Patient-level splits: grouping of folders into people, automatic, manual and k-fold splits.

Splits are always by patient, never by frame: consecutive frames of one scan are nearly identical, so a frame-level
split would leak the validation set into training. A person scanned several times (several folders) is one
patient, declared in a grouping JSON file ``{folder: patient_id}``.
"""
from __future__ import annotations

import difflib
import json
import logging
import random
import re
import shlex
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Iterable, List, Mapping, Optional, Sequence, Tuple, Union

from ..errors import DataError
from ..io.fileio import read_json
from ..names import SPLIT_NAMES
from .records import refuse_unsafe_text, shown

logger = logging.getLogger(__name__)
# What a second scan of one person tends to add to the first one's folder name: "anna_rescan", "anna-2", "anna scan3"
SCAN_SUFFIX = re.compile(r"[ _.\-]+(?:re-?scan|scan|repeat|visit|session|follow-?up|copy|take)?[ _.\-]?\d*")


@dataclass
class PatientSplit:
    """Patient ids of each split; a patient is in at most one split."""

    train: List[str] = field(default_factory=list)
    val: List[str] = field(default_factory=list)
    test: List[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        seen: Dict[str, str] = {}
        for name in SPLIT_NAMES:
            for patient in getattr(self, name):
                if patient in seen:
                    where = "twice in" if seen[patient] == name else f"in both {seen[patient]} and"
                    raise DataError(f"patient split: patient {patient!r} is listed {where} {name}")
                seen[patient] = name

    def to_dict(self) -> Dict[str, List[str]]:
        return {name: list(getattr(self, name)) for name in SPLIT_NAMES}

    @classmethod
    def from_dict(cls, values: Mapping[str, Sequence[str]]) -> "PatientSplit":
        if not isinstance(values, Mapping) or set(values) - set(SPLIT_NAMES):
            raise DataError(f"patient split: expected a mapping with keys {SPLIT_NAMES}, got {shown(values)}")
        lists = {name: values.get(name, []) for name in SPLIT_NAMES}
        for name, patients in lists.items():
            if not isinstance(patients, (list, tuple)) or not all(isinstance(p, str) for p in patients):
                raise DataError(f"patient split: {name} must be a list of patient ids, got {shown(patients)}")
        return cls(**{name: list(patients) for name, patients in lists.items()})

    def split_by_patient(self) -> Dict[str, str]:
        """``{patient: "train" | "val" | "test"}``."""
        return {patient: name for name in SPLIT_NAMES for patient in getattr(self, name)}

    def patients(self) -> List[str]:
        """Every patient of the split, train then val then test."""
        return self.train + self.val + self.test

    def select(self, split: str, names: Optional[Sequence[str]] = None, grouping: Optional[Mapping[str, str]] = None,
               source: str = "patient split") -> List[str]:
        """The patients of ``split`` (every split for ``"all"``), narrowed to ``names`` (patient ids, or folder
        names that ``grouping`` maps to their patient, as a manual split takes them); DataError naming ``source``
        when none are left or a name is not in the split."""
        splits = SPLIT_NAMES if split == "all" else (split,)
        in_split = [patient for name in splits for patient in getattr(self, name)]
        if not in_split:
            counts = ", ".join(f"{name}: {len(getattr(self, name))}" for name in SPLIT_NAMES)
            raise DataError(f"{source}: the {split} split of this checkpoint has no patients ({counts}); choose "
                            "another split")
        if not names:
            return in_split
        wanted = [(grouping or {}).get(name, name) for name in names]
        unknown = [name for name, patient in zip(names, wanted) if patient not in in_split]
        if unknown:
            names_in_split = in_split + [folder for folder, patient in (grouping or {}).items() if patient in in_split]
            hint = encoding_hint(unknown, names_in_split, f"the {split} split") or comma_hint(unknown, names_in_split)
            raise DataError(f"{source}: patient(s) {', '.join(map(repr, unknown))} not in the {split} split (its "
                            f"patients: {', '.join(in_split)}){hint}")
        return [patient for patient in in_split if patient in set(wanted)]


def read_grouping(path: Union[str, Path], folders: Iterable[str]) -> Dict[str, str]:
    """``{folder: patient_id}`` for every folder in ``folders``; folders the file does not name are their own
    patient. The file is a JSON object mapping folder names to patient ids."""
    path = Path(path)
    folders = list(folders)
    mapping = read_json(path, "grouping file", DataError)
    if not isinstance(mapping, dict):
        raise DataError(f"{path}: expected a JSON object {{folder: patient_id}}, got {type(mapping).__name__}")
    known = set(folders)
    for folder, patient in mapping.items():
        if not isinstance(patient, str) or not patient:
            raise DataError(
                f"{path}: folder {shown(folder)} must map to a non-empty patient id string, got {shown(patient)}"
            )
        refuse_unsafe_text(patient, f"{path}: the patient id of folder {shown(folder)},")
        if patient != patient.strip():  # "anna " and "anna" would be two people, one in train and one in val
            raise DataError(f"{path}: the patient id of folder {shown(folder)} has leading or trailing spaces "
                            f"({shown(patient)}); write it as {shown(patient.strip())}")
        if folder not in known:
            raise DataError(f"{path}: folder {shown(folder)} is not a patient folder of the data directory"
                            f"{_folder_hint(folder, known)}")
    return {folder: mapping.get(folder, folder) for folder in folders}


def folders_by_patient(grouping: Mapping[str, str]) -> Dict[str, List[str]]:
    """The inverse of a grouping: each patient's folders, sorted."""
    folders: Dict[str, List[str]] = {}
    for folder, patient in sorted(grouping.items()):
        folders.setdefault(patient, []).append(folder)
    return folders


def automatic_split(
    patients: Iterable[str],
    train_ratio: float = 0.70,
    val_ratio: float = 0.15,
    test_ratio: float = 0.15,
    seed: int = 42,
) -> PatientSplit:
    """A seeded random split by patient, the same for the same patients and seed whatever their order.

    Counts follow the ratios by largest remainder, then train and val get at least one patient each and test gets
    one when its ratio is > 0 and a split can spare one: 3 patients -> 1/1/1, 4 -> 2/1/1, 10 -> 7/2/1 (ties go to
    val), 20 -> 14/3/3. Fewer than two patients cannot be split (there would be nothing to validate on).
    """
    pool = sorted(set(patients))
    if len(pool) < 2:
        raise DataError(f"automatic split: need at least 2 patients (one to train, one to validate), got {len(pool)}")
    random.Random(seed).shuffle(pool)
    n_train, n_val, _ = _split_counts(len(pool), (train_ratio, val_ratio, test_ratio))
    return PatientSplit(
        train=sorted(pool[:n_train]),
        val=sorted(pool[n_train : n_train + n_val]),
        test=sorted(pool[n_train + n_val :]),
    )


def _split_counts(total: int, ratios: Sequence[float]) -> List[int]:
    quotas = [total * ratio / sum(ratios) for ratio in ratios]
    counts = [int(quota) for quota in quotas]
    by_remainder = sorted(range(3), key=lambda i: (-(quotas[i] - counts[i]), i))
    for i in by_remainder[: total - sum(counts)]:
        counts[i] += 1
    # Train and val cannot be empty; test gets a patient too when asked for and one can be spared.
    for i, required in ((1, True), (0, True), (2, ratios[2] > 0)):
        if counts[i] == 0 and required:
            donor = max((j for j in range(3) if j != i and counts[j] > 1), key=lambda j: counts[j], default=None)
            if donor is not None:
                counts[donor] -= 1
                counts[i] += 1
    return counts


def manual_split(
    patients: Iterable[str],
    train: Sequence[str],
    val: Sequence[str],
    test: Sequence[str] = (),
    grouping: Optional[Mapping[str, str]] = None,
) -> PatientSplit:
    """The split the user listed; names may be patient ids or folder names (mapped through ``grouping``).

    Patients on disk but listed nowhere are left out of every split, with a warning.
    """
    known = set(patients)
    grouping = grouping or {}
    lists, listed_as = {}, {}  # patient -> (split, the name the user wrote) where it was first listed
    for name, names in zip(SPLIT_NAMES, (train, val, test)):
        ids = []
        for raw in names:
            patient = raw if raw in known else grouping.get(raw)
            if patient not in known:
                on_disk = sorted(known | set(grouping))
                hint = encoding_hint([raw], on_disk, "the data directory") or comma_hint([raw], on_disk) or \
                    _suggestion(raw, on_disk)
                raise DataError(f"manual split: {name} patient {raw!r} does not exist in the data directory{hint}")
            if patient in listed_as:
                first_split, first_raw = listed_as[patient]
                written = {raw, first_raw} - {patient}
                how = f" (the grouping file puts {' and '.join(map(repr, sorted(written)))} in it)" if written else ""
                where = f"twice in {name}" if first_split == name else f"in both {first_split} and {name}"
                raise DataError(f"manual split: patient {patient!r}{how} is listed {where}")
            listed_as[patient] = (name, raw)
            ids.append(patient)
        lists[name] = ids
    for name in ("train", "val"):
        if not lists[name]:
            raise DataError(f"manual split: the {name} list is empty; name at least one patient")
    split = PatientSplit(**lists)
    unused = sorted(known - set(split.patients()))
    if unused:
        logger.warning("manual split: %d patient(s) in no split and unused: %s", len(unused), ", ".join(unused))
    return split


def kfold_splits(patients: Iterable[str], k: int, seed: int = 42, test: Sequence[str] = ()) -> List[PatientSplit]:
    """``k`` cross-validation splits: the non-test patients are dealt into ``k`` seeded folds, fold ``i``
    validates and the others train; the held-out ``test`` patients are the same in every split."""
    pool = sorted(set(patients))
    unknown = sorted(set(test) - set(pool))
    if unknown:
        raise DataError(f"k-fold split: test patient(s) {', '.join(map(repr, unknown))} do not exist"
                        f"{encoding_hint(unknown, pool, 'the data directory') or comma_hint(unknown, pool)}")
    pool = [patient for patient in pool if patient not in set(test)]
    if k < 2 or k > len(pool):
        raise DataError(f"k-fold split: k must be between 2 and the {len(pool)} non-test patients, got {k}")
    random.Random(seed).shuffle(pool)
    folds = [sorted(pool[i::k]) for i in range(k)]
    return [
        PatientSplit(
            train=sorted(p for j, fold in enumerate(folds) if j != i for p in fold),
            val=folds[i],
            test=sorted(test),
        )
        for i in range(k)
    ]


def cross_validation_folds(k: int, seed: int, grouping: Mapping[str, str], test_names: Sequence[str] = (),
                           ) -> tuple[List[PatientSplit], List[List[str]]]:
    """``(folds, inner)``: :func:`kfold_splits` of the grouping's patients, the ``test_names`` (patient ids or
    folder names: a person held out by naming their scans' folders is held out once) outside all of them, and in
    each fold one seeded training patient that selects the checkpoint."""
    patients = sorted(set(grouping.values()))
    test = list(dict.fromkeys(name if name in patients else grouping.get(name, name) for name in test_names))
    folds = kfold_splits(patients, k, seed=seed, test=test)
    inner = []
    for index, fold in enumerate(folds):
        if len(fold.train) < 2:
            raise DataError(f"cross-validation: a fold has {len(fold.train)} training patient(s); it needs 2 or more "
                            "(one selects the checkpoint): use fewer folds or more patients")
        inner.append([random.Random(seed + index).choice(sorted(fold.train))])
    return folds, inner


def look_alike_across_splits(split: PatientSplit) -> List[Tuple[str, str, str, str]]:
    """``[(patient, its split, patient, its split), ...]``: patients in two splits whose names differ only in case,
    in how their accents are encoded, or by a scan suffix ('anna' and 'Anna', 'anna' and 'anna_rescan' or 'anna_2').

    Why: every folder is its own patient unless a grouping file says otherwise, so a second scan of one person
    exported under a look-alike name can land in another split, and the model is then scored on someone it trained
    on. Names are only a hint (two people may be 'p_1' and 'P_1'), so this is for a warning, not a refusal."""
    where = split.split_by_patient()
    by_key: Dict[str, List[str]] = {}
    for patient in sorted(where):
        by_key.setdefault(unicodedata.normalize("NFC", patient).casefold(), []).append(patient)
    pairs = []
    for key, patients in by_key.items():
        twins = [(a, b) for index, a in enumerate(patients) for b in patients[index + 1:]]
        stems = [key[:cut] for cut in range(1, len(key)) if key[:cut] in by_key and SCAN_SUFFIX.fullmatch(key[cut:])]
        twins += [(a, b) for stem in stems for a in by_key[stem] for b in patients]
        pairs += [(a, where[a], b, where[b]) for a, b in twins if where[a] != where[b]]
    return pairs


def encoding_hint(names: Iterable[str], known: Iterable[str], where: str) -> str:
    """`` ('café' is 'cafe\\u0301' here and 'caf\\xe9' in the data directory: ...)`` when a name differs from one of
    ``known`` only in how its accents are encoded (Unicode NFC against NFD: a list typed on one system, folders
    written by another), which prints alike on both sides of a message; '' when none does."""
    by_letters = {unicodedata.normalize("NFC", name): name for name in known}
    for name in names:
        twin = by_letters.get(unicodedata.normalize("NFC", name))
        if twin is not None and twin != name:
            return (f" ({name!r} is {ascii(name)} here and {ascii(twin)} in {where}: the same letters with the accents "
                    "encoded another way, Unicode NFC against NFD; copy the name from there)")
    return ""


def comma_hint(names: Iterable[str], known: Iterable[str]) -> str:
    """`` ('a,b' is one name: ...)`` when a name was cut out of a known name that holds a comma (a comma separates
    the names a flag takes), saying how to quote it there and in a YAML list; '' when none was."""
    names = set(names)
    for name in sorted(known):
        if "," in name and names & {part.strip() for part in name.split(",")}:
            quoted = '"' + name.replace('"', '""') + '"'  # a quote inside quotes is doubled, as in a CSV file
            return (f" ({name!r} is one name: in a flag's comma-separated names write it in double quotes, which a "
                    f"shell keeps inside single quotes: {shlex.quote(quoted)}; in --set or a YAML file, as an item "
                    f"of a list: [{json.dumps(name, ensure_ascii=False)}])")
    return ""


def _folder_hint(folder: str, known: Iterable[str]) -> str:
    """`` (did you mean 'bob'?)`` for a grouping file's mistyped folder, or the accents' encoding when that is what
    differs; '' when no folder is close."""
    close = difflib.get_close_matches(folder, sorted(known), n=1)
    return encoding_hint([folder], known, "the data directory") or (f" (did you mean {close[0]!r}?)" if close else "")


def _suggestion(name: str, names: Sequence[str], shown: int = 8) -> str:
    """`` (did you mean 'x'? its patients: a, b, ...)``: what a mistyped name was probably meant to be."""
    close = difflib.get_close_matches(name, names, n=1)
    listed = ", ".join(names[:shown]) + (f" and {len(names) - shown} more" if len(names) > shown else "")
    return f" ({f'did you mean {close[0]!r}? ' if close else ''}its patients: {listed})"
