"""What a closed-loop run is asked for (:class:`NavigationSettings`) and what it found (:class:`NavigationResult`):
the shared vocabulary of the runner, which fills them, and the report, which writes them."""
from __future__ import annotations

import dataclasses
import functools
from dataclasses import asdict, dataclass, field
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

from ...errors import ConfigError
from ...names import SPLIT_CHOICES
from ..session import ARRIVAL_DEG, ARRIVAL_MM, PLANNERS, SessionSettings
from . import scoring
from .patients import NavigationPatient
from .simulator import Episode, EpisodeSettings, centred_box
from .starts import inside

START_GROUPS = ("inside_training_range", "outside_training_range")
MAX_EPISODES = 100_000  # ~1 s each on 2 CPU cores: more is a typo, refused before the model loads


@dataclass(frozen=True)
class NavigationSettings:
    """What to run: how many episodes, which model policies, on which patients, and the episodes' settings."""

    episodes: int = 100  # in all, dealt to the patients in turn
    histories: Tuple[int, ...] = (0, 4)  # one model policy per value (looks fused besides the current one)
    planners: Tuple[str, ...] = ("direct",)  # "imagine" adds a world-model-planned policy per history
    split: str = "test"
    patients: Optional[Tuple[str, ...]] = None  # narrows the split's patients
    # (mm, degrees): starts uniform within this box around the view; None: starts within the training poses' range
    # on each axis, from sweeps where the patients were written as sweeps (:mod:`.starts`); either replaces the
    # episode settings' own starts
    start_range: Optional[Tuple[float, float]] = None
    # (mm, degrees): the model's sessions say "arrived" when their estimate is within this on every component; a
    # stricter one than the 5 mm / 5 deg that success is judged at keeps a model that under-reads small deviations
    # moving (docs/closed-loop.md)
    arrival: Tuple[float, float] = (ARRIVAL_MM, ARRIVAL_DEG)
    episode: EpisodeSettings = field(default_factory=EpisodeSettings)

    def __post_init__(self) -> None:
        if not 1 <= self.episodes <= MAX_EPISODES:
            raise ConfigError(f"episodes must be in [1, {MAX_EPISODES}], got {self.episodes}")
        if not self.histories or len(set(self.histories)) != len(self.histories):
            raise ConfigError(f"history values must be distinct and at least one, got {list(self.histories)}")
        if len(self.arrival) != 2 or not all(np.isfinite(limit) and limit > 0 for limit in self.arrival):
            raise ConfigError(f"arrival must be two positive numbers (mm, degrees), e.g. --arrival 2.5mm,2.5deg, "
                              f"got {list(self.arrival)}")
        for history in self.histories:
            self.session_settings(history)  # validates the range
        unknown = [planner for planner in self.planners if planner not in PLANNERS]
        if unknown or not self.planners or len(set(self.planners)) != len(self.planners):
            raise ConfigError(f"planners must be among {', '.join(PLANNERS)}, each at most once, got "
                              f"{list(self.planners)}")
        if self.split not in SPLIT_CHOICES:
            raise ConfigError(f"split must be one of {', '.join(SPLIT_CHOICES)}, got {self.split!r}")
        if self.start_range is not None:
            self._episode_starting_in(*centred_box(*self.start_range))  # validates the box

    def session_settings(self, history: int, planner: str = "direct") -> SessionSettings:
        """The settings of the model's session with this history and planner."""
        return SessionSettings(history, arrival_mm=self.arrival[0], arrival_deg=self.arrival[1], planner=planner)

    def with_starts(self, kind: str, low, high) -> "NavigationSettings":
        """These settings with episodes starting in ``[low, high]`` per component (mm, degrees), drawn as ``kind``
        says (``"box"``: uniform; ``"sweep"``: poses of phantom sweeps)."""
        return dataclasses.replace(self, episode=self._episode_starting_in(low, high, kind))

    def _episode_starting_in(self, low, high, kind: str = "box") -> EpisodeSettings:
        return dataclasses.replace(self.episode, starts=kind, start_low=tuple(float(value) for value in low),
                                   start_high=tuple(float(value) for value in high))


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
