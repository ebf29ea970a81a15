"""What a closed-loop run found (:class:`NavigationResult`), and the settings it was asked for
(:class:`~cardiac_dreamer.guidance.settings.NavigationSettings`) as JSON: the shared vocabulary of the runner, which
fills them, and the report, which writes them."""
from __future__ import annotations

import functools
from dataclasses import asdict, dataclass
from typing import Any, Dict, List

import numpy as np

from ..settings import NavigationSettings
from . import scoring
from .patients import NavigationPatient
from .simulator import Episode
from .starts import inside

START_GROUPS = ("inside_training_range", "outside_training_range")


@dataclass
class NavigationResult:
    """Every episode of every policy, and what the report needs to say about them."""

    episodes: List[Episode]
    policies: Dict[str, str]  # name -> description, in run order
    patients: List[NavigationPatient]
    settings: NavigationSettings  # as run: the episode settings hold the start range used
    metadata: Dict[str, Any]  # includes "training_range": {"low": [6], "high": [6], "source": str}

    def of_policy(self, name: str) -> List[Episode]:
        return [episode for episode in self.episodes if episode.policy == name]

    def start_group(self, episode: Episode) -> str:
        """Which of :data:`START_GROUPS` the episode's start pose falls in."""
        limits = self.metadata["training_range"]
        return START_GROUPS[0] if inside(episode.start_pose, limits["low"], limits["high"]) else START_GROUPS[1]

    @property
    def model_policies(self) -> List[str]:
        return [name for name in self.policies if name.startswith("model_")]

    @functools.cached_property
    def summary(self) -> Dict[str, Dict[str, Any]]:
        """``{policy: {"overall", "per_patient": {patient: ...}, "starts": {group: ...}}}`` of
        :func:`scoring.summarize`; "starts" holds only the groups that have episodes."""
        summary = {}
        for name in self.policies:
            episodes = self.of_policy(name)
            groups = {group: [episode for episode in episodes if self.start_group(episode) == group]
                      for group in START_GROUPS}
            summary[name] = {"overall": scoring.summarize(episodes),
                             "per_patient": scoring.summarize_by_patient(episodes),
                             "starts": {group: scoring.summarize(members) for group, members in groups.items()
                                        if members}}
        return summary

    @functools.cached_property
    def paired(self) -> Dict[str, Dict[str, Any]]:
        """``{"A - B": differences}`` for each model policy against ``mean`` (the move guidance without images
        suggests: what reading the images must beat), then every pair of model policies, A after B in run order
        (:func:`scoring.paired_differences`: same episodes, hierarchical bootstrap)."""
        names = self.model_policies
        pairs = [(name, "mean") for name in names if "mean" in self.policies]
        pairs += [(later, earlier) for index, earlier in enumerate(names) for later in names[index + 1:]]
        return {f"{first} - {second}": scoring.paired_differences(self.of_policy(first), self.of_policy(second))
                for first, second in pairs}


def settings_record(settings: NavigationSettings) -> Dict[str, Any]:
    """The settings as plain JSON values."""
    record = asdict(settings)
    record["histories"], record["planners"] = list(settings.histories), list(settings.planners)
    record["patients"] = list(settings.patients) if settings.patients else None
    record["start_range"] = list(settings.start_range) if settings.start_range else None
    record["arrival"] = list(settings.arrival)
    return record


def range_record(low: np.ndarray, high: np.ndarray, source: str) -> Dict[str, Any]:
    """The training range as metadata: ``{"low": [6], "high": [6], "source": str}``."""
    return {"low": [float(value) for value in low], "high": [float(value) for value in high], "source": source}
