"""The cross-validation's plan: each fold's patients, its inner validation patients and seeds, stored in
``cv_plan.json`` before anything trains, so that ``--resume_cv`` finishes the same folds."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Mapping

from ..config import VARIANTS, Config, apply_overrides, with_absolute_paths
from ..data.image_check import verify_images
from ..data.prepare import read_grouped_records
from ..data.splits import PatientSplit, cross_validation_folds
from ..errors import ConfigError, DataError
from ..io.fileio import read_json

PLAN_FILE = "cv_plan.json"
COMPARED_VARIANTS = ("dreamer", "direct")  # what --compare trains, in its order: the world model, then its baseline


@dataclass
class CrossValidationPlan:
    """What a cross-validation run will do, stored in ``cv_plan.json`` so ``--resume_cv`` can finish it."""

    config: Config
    variants: List[str]
    folds: List[PatientSplit]  # fold i reports folds[i].val; test is the same held-out group in every fold
    inner_val: List[List[str]]  # fold i's checkpoint-selection patients, taken from folds[i].train
    seeds: List[int]
    grouping: Dict[str, str]  # folder -> patient id

    def run_split(self, index: int) -> PatientSplit:
        """The split fold ``index`` trains with: the inner validation patients select the checkpoint, the fold's
        reported patients (and the held-out ones) are its test patients."""
        fold = self.folds[index]
        inner = self.inner_val[index]
        return PatientSplit(train=[p for p in fold.train if p not in inner], val=list(inner),
                            test=sorted(fold.val + fold.test))

    def fold_config(self, variant: str, seed: int) -> Config:
        """The config one fold trains with; ``cv_folds`` is off so its run resumes as an ordinary run."""
        return apply_overrides(self.config, {"model.variant": variant, "data.cv_folds": 0, "training.seed": seed},
                               source="cross-validation")

    def to_dict(self) -> Dict[str, Any]:
        return {"config": self.config.to_dict(), "variants": list(self.variants), "seeds": list(self.seeds),
                "test_patients": list(self.folds[0].test), "folds": [fold.to_dict() for fold in self.folds],
                "inner_val": [list(patients) for patients in self.inner_val], "grouping": dict(self.grouping)}

    @classmethod
    def from_dict(cls, values: Mapping[str, Any], source: str) -> "CrossValidationPlan":
        missing = next((key for key in ("config", "variants", "folds", "inner_val", "seeds", "grouping")
                        if key not in values), None)
        if missing:
            raise ConfigError(f"{source}: not a valid cross-validation plan (it has no {missing!r} entry)")
        try:
            plan = cls(Config.from_stored(values["config"], source=f"{source}: config"), list(values["variants"]),
                       [PatientSplit.from_dict(fold) for fold in values["folds"]],
                       [list(patients) for patients in values["inner_val"]], [int(s) for s in values["seeds"]],
                       dict(values["grouping"]))
        except (KeyError, TypeError, ValueError, DataError) as error:
            raise ConfigError(f"{source}: not a valid cross-validation plan (an entry of the wrong kind: {error})") \
                from None
        names = [*plan.grouping, *plan.grouping.values(), *(name for inner in plan.inner_val for name in inner)]
        valid = (len(plan.folds) >= 2 and plan.variants and set(plan.variants) <= set(VARIANTS) and plan.seeds
                 and len(plan.inner_val) == len(plan.folds) and all(plan.inner_val)
                 and all(isinstance(name, str) for name in names))
        if not valid:
            raise ConfigError(f"{source}: not a valid cross-validation plan (needs >= 2 folds, known variants, "
                              "seeds, an inner validation group per fold and patients named by text)")
        people = set(plan.grouping.values())
        for number, (fold, inner) in enumerate(zip(plan.folds, plan.inner_val), start=1):
            unknown = sorted(set(fold.train + fold.val + fold.test + inner) - people)
            if unknown:
                raise ConfigError(f"{source}: fold {number} names {unknown[0]!r}, not a patient of the plan's "
                                  f"grouping ({len(people)} patients); not a valid cross-validation plan")
            if not set(inner) <= set(fold.train):
                raise ConfigError(f"{source}: fold {number}'s inner validation patients are not among its training "
                                  "patients; not a valid cross-validation plan")
        return plan


def plan_cross_validation(config: Config, compare: bool = False, seeds: int = 1) -> CrossValidationPlan:
    """The folds of ``config``: its patients (grouping-file ids) dealt into ``data.cv_folds`` seeded folds, the
    held-out ``data.test_patients`` (ids or folder names) outside all of them, and in each fold one training
    patient set aside to select the checkpoint on.

    Every patient folder is read and validated here, before anything is written.
    """
    config = with_absolute_paths(config)  # cv_plan.json records where the data is, for --resume_cv from anywhere
    k = config.data.cv_folds
    if k < 2:
        raise ConfigError(f"cross-validation needs data.cv_folds >= 2 (--cv K), got {k}")
    if seeds < 1:
        raise ConfigError(f"cross-validation needs --seeds >= 1, got {seeds}")
    # every folder and every image validated before anything is written
    records, grouping = read_grouped_records(config.data)
    verify_images(records, config.data.image_size)
    folds, inner = cross_validation_folds(k, config.data.split_seed, grouping, config.data.test_patients)
    variants = list(COMPARED_VARIANTS) if compare else [config.model.variant]
    seed_list = [config.training.seed + offset for offset in range(seeds)]
    plan = CrossValidationPlan(config, variants, folds, inner, seed_list, grouping)
    for variant in variants:  # a setting one arm or seed refuses fails now, not after the folds before it trained
        for seed in seed_list:
            plan.fold_config(variant, seed)
    return plan


def check_same_grouping(plan: CrossValidationPlan, cv_dir: Path) -> None:
    """Refuse to resume when the data's folders or their people have changed since the plan: the folds and
    baselines left to run would read another grouping than the finished ones, and the table would mix the two."""
    _, grouping = read_grouped_records(plan.config.data)
    changed = sorted(set(grouping) ^ set(plan.grouping)) + sorted(
        folder for folder in set(grouping) & set(plan.grouping) if grouping[folder] != plan.grouping[folder])
    if changed:
        folder = changed[0]
        now, then = grouping.get(folder, "no folder"), plan.grouping.get(folder, "no folder")
        raise DataError(f"{cv_dir / PLAN_FILE}: the data changed since this cross-validation started ({folder}: "
                          f"now {now}, then {then}; {len(changed)} folder(s) differ); restore it, or start a new "
                          "--cv")


def read_plan(cv_dir: Path) -> CrossValidationPlan:
    """The plan of an existing cross-validation directory; ConfigError when it is not one."""
    cv_dir = Path(cv_dir)
    if cv_dir.exists() and not cv_dir.is_dir():
        raise ConfigError(f"{cv_dir}: is a file, not a cross-validation directory")
    if not cv_dir.is_dir():
        raise ConfigError(f"{cv_dir}: cross-validation directory not found")
    if not (cv_dir / PLAN_FILE).is_file():
        raise ConfigError(f"{cv_dir}: not a cross-validation directory (no {PLAN_FILE})")
    values = read_json(cv_dir / PLAN_FILE, "cross-validation plan", ConfigError)
    if not isinstance(values, dict):
        raise ConfigError(f"{cv_dir / PLAN_FILE}: not a valid cross-validation plan (expected a JSON object)")
    return CrossValidationPlan.from_dict(values, source=str(cv_dir / PLAN_FILE))
