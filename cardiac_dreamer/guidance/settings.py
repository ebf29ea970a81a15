"""What a guidance session and a closed-loop run are asked for, validated on creation.

Plain values and numpy only, no torch: ``cardiac-evaluate`` shows these defaults in ``--help`` and refuses a bad
setting in a fraction of a second, before it loads the model code.
"""
from __future__ import annotations

import dataclasses
import math
import numbers
from dataclasses import dataclass, field
from typing import Optional, Tuple

import numpy as np

from ..config import check_choice, whole_number
from ..errors import ConfigError
from ..names import AXIS_NAMES, SPLIT_CHOICES

PLANNERS = ("direct", "imagine")
ARRIVAL_MM, ARRIVAL_DEG = 5.0, 5.0  # per component: what "at the view" means by default
MAX_HISTORY = 64
START_KINDS = ("box", "sweep")
MAX_STEPS = 10_000  # frames per episode; a sonographer gives up long before
MAX_EPISODES = 100_000  # ~1 s each on 2 CPU cores: more is a typo, refused before the model loads


@dataclass(frozen=True)
class SessionSettings:
    """How a session fuses and when it says "arrived"."""

    history: int = 0  # past frames fused with the current one; 0 = the current frame alone
    arrival_mm: float = ARRIVAL_MM
    arrival_deg: float = ARRIVAL_DEG
    planner: str = "direct"  # "direct": the inverse of the estimate; "imagine": the world model picks a move

    def __post_init__(self) -> None:
        # a numpy integer from a notebook sweep is fine
        object.__setattr__(self, "history", whole_number(self.history, "session history", 0, MAX_HISTORY))
        for name in ("arrival_mm", "arrival_deg"):
            value = getattr(self, name)
            try:  # a Fraction or a numpy float from a notebook is fine; float() of 10**400 overflows
                number = float(value) if _is_real(value) else math.nan
            except OverflowError:
                number = math.inf
            if not math.isfinite(number) or number <= 0:
                raise ConfigError(f"session {name} must be a positive number, got {value!r}")
            object.__setattr__(self, name, number)
        check_choice("session planner", self.planner, PLANNERS)


@dataclass(frozen=True)
class EpisodeSettings:
    """Where episodes start, how long they may run and how the sonographer follows."""

    max_steps: int = 20  # frames the session is consulted on (each either says "arrived" or moves the probe)
    # starts in [start_low, start_high] per component (mm for x, y, z; degrees for the angles), redrawn while
    # already at the view: "box" uniform in it, "sweep" a pose of a fresh phantom sweep that lies in it
    starts: str = "box"
    start_low: Tuple[float, ...] = (-20.0,) * 6
    start_high: Tuple[float, ...] = (20.0,) * 6
    follow_noise: float = 0.1
    seed: int = 0

    def __post_init__(self) -> None:
        if not 1 <= self.max_steps <= MAX_STEPS:
            raise ConfigError(f"max_steps must be in [1, {MAX_STEPS}], got {self.max_steps}")
        check_choice("starts", self.starts, START_KINDS)
        low, high = np.asarray(self.start_low, dtype=np.float64), np.asarray(self.start_high, dtype=np.float64)
        if low.shape != (6,) or high.shape != (6,) or not (np.isfinite(low).all() and np.isfinite(high).all()) or \
                (low > high).any() or max(np.abs(low).max(), np.abs(high).max()) > 180:
            raise ConfigError(f"the start box must give 6 components low <= high within [-180, 180] mm and degrees, "
                              f"got {box_text(self.start_low, self.start_high)}")
        if box_inside_view(low, high):
            raise ConfigError(f"a start box of {box_text(low, high)} lies inside the {ARRIVAL_MM:g} mm / "
                              f"{ARRIVAL_DEG:g} deg view: there would be nothing to navigate")
        if not 0 <= self.follow_noise <= 10:
            raise ConfigError(f"follow_noise must be in [0, 10], got {self.follow_noise}")
        if self.seed < 0:
            raise ConfigError(f"seed must be >= 0, got {self.seed}")


@dataclass(frozen=True)
class NavigationSettings:
    """What to run: how many episodes, which model policies, on which patients, and the episodes' settings."""

    episodes: int = 100  # in all, dealt to the patients in turn
    histories: Tuple[int, ...] = (0, 4)  # one model policy per value (looks fused besides the current one)
    planners: Tuple[str, ...] = ("direct",)  # "imagine" adds a world-model-planned policy per history
    split: str = "test"
    patients: Optional[Tuple[str, ...]] = None  # narrows the split's patients
    # (mm, degrees): starts uniform within this box around the view; None: starts within the training poses' range
    # on each axis, from sweeps where the patients were written as sweeps (navigation.starts); either replaces the
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
        check_choice("split", self.split, SPLIT_CHOICES)
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


def centred_box(mm: float, deg: float) -> Tuple[Tuple[float, ...], Tuple[float, ...]]:
    """``(low, high)``: the box ``[-mm, mm]`` on x, y, z and ``[-deg, deg]`` on the angles."""
    high = (float(mm),) * 3 + (float(deg),) * 3
    return tuple(-value for value in high), high


def box_inside_view(low, high) -> bool:
    """Whether every pose of the box lies within the arrival view (no start to draw)."""
    reach = np.maximum(np.abs(np.asarray(low, dtype=np.float64)), np.abs(np.asarray(high, dtype=np.float64)))
    return bool((reach[:3] <= ARRIVAL_MM).all() and (reach[3:] <= ARRIVAL_DEG).all())


def box_text(low, high) -> str:
    """``x -7.2..7.4, y ..., z ... mm; roll ..., pitch ..., yaw ... deg``."""
    parts = [f"{name} {float(a):.3g}..{float(b):.3g}" for name, a, b in zip(AXIS_NAMES, low, high)]
    return f"{', '.join(parts[:3])} mm; {', '.join(parts[3:])} deg"


def _is_real(value) -> bool:
    """A real number (numpy's count), never a bool."""
    return isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))
