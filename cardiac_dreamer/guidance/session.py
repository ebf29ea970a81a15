"""``GuidanceSession``: the real-time guidance loop's runtime, one frame in, one piece of guidance out.

A single frame's pose estimate is noisy (speckle, a model's local errors). Between two frames the probe moved by a
move the caller knows (a tracker, a robot, or the simulator), so past estimates can be carried forward through the
moves executed since and fused with the current one: several looks at the same pose.

Fusion rule: the per-component **median** of the current estimate and the last ``history`` carried-forward ones
**that are independent of the move being judged**. An estimate that chose a move is not evidence about where that
move led: the move was built to cancel it, so carried forward it reads "at the view" whatever the move achieved
(a model that reads 20 mm as 10 sends the probe to 10 mm, where the carried estimate says 0). So once the probe
makes the move the session suggested (the fused pose, carried through the moves executed since, lands within the
arrival threshold, or those moves are the planner's suggestion within the threshold plus half of each of its
components: a hand overshoots or falls short), the estimates that chose it are dropped and the next frame is judged
on its own. Estimates carried through moves the session did not choose (the
sonographer went elsewhere) stay.

History therefore pays where looks are independent: at one pose. Until the fused pose rests on ``history + 1``
looks, the session asks the sonographer to hold still (a zero move, not arrived) and looks again; it moves or says
"arrived" on the median of ``history + 1`` frames of one pose (a sixth of a second of video for ``history=4`` at
30 frames per second). ``history = 0`` is the current frame alone, as before.

Why the median: one frame that throws the model (an off-sector view, a shadow) moves a mean by a fifth of its
error at ``history=4`` but a median not at all, and the median needs no tuning constant. Repeated looks average
out noise (fresh speckle), not a model's bias at that pose. Angles are combined as numbers, which is right for the
tens of degrees around the view that guidance works in, not near +-180 degrees.

With a checkpoint that holds a sequential estimator (``model.sequence_frames`` K,
:mod:`cardiac_dreamer.models.sequence`), the same frames (the current one and the independent history, at most K)
are fused by it instead of the median: it reads each frame's features, its estimate and the move accumulated since,
and learned from the training sweeps how far to trust each.

Importing this module loads torch and the model code, never matplotlib nor the trainer.
"""
from __future__ import annotations

import os
import reprlib
from dataclasses import dataclass
from typing import List, Optional, Protocol, Sequence, Union

import numpy as np
import torch

from ..errors import ConfigError, DataError
from ..evaluation.metrics import rotation_errors, translation_errors
from ..geometry import COMPOSITION_MODES, apply_move, as_moves, folded_poses, move_between, undo_move, \
    unwrapped_poses
from .settings import ARRIVAL_DEG, ARRIVAL_MM, PLANNERS, SessionSettings

# The imagine planner's candidates: the suggested move scaled. One axis nudged by +-25 % (12 more candidates, once)
# moved at most two closed-loop episodes of 40 on three demo models, for 3.4x the dreamer's work (closed-loop.md).
PLAN_SCALES = (0.25, 0.5, 0.75, 1.0, 1.25)


class FrameLook(Protocol):
    """One frame as a model encoded it: :class:`~cardiac_dreamer.evaluation.predictor.Look` is one."""

    pose: np.ndarray  # [6] the frame's own estimate
    pooled: torch.Tensor  # [512] its pooled features, which a sequential estimator reads

    def imagine(self, moves) -> np.ndarray:
        """``[K, 6]``: the poses imagined after each of ``moves`` [K, 6] from this frame, without encoding it again."""


class PosePredictor(Protocol):
    """What a session needs from a model: :class:`~cardiac_dreamer.evaluation.Predictor` is one."""

    composition: str  # "additive" or "se3": how a move changes a pose

    @property
    def can_imagine(self) -> bool: ...

    def look(self, image) -> FrameLook: ...


def _sequence_frames(predictor: PosePredictor) -> int:
    """K when the predictor has a trained sequential estimator (:meth:`Predictor.fuse`), else 0."""
    return int(getattr(predictor, "sequence_frames", 0) or 0)


@dataclass(frozen=True)
class Guidance:
    """What the runtime tells the sonographer after one frame. Poses and moves are ``[x, y, z, roll, pitch, yaw]``
    in mm and degrees, relative to the target view.

    ``spread_mm`` / ``spread_deg``: the root mean square distance (Euclidean translation, geodesic rotation) of
    the fused estimates from the fused pose (their median, or the sequential estimator's pose), the session's own
    measure of how much its looks disagree; None when one frame is all it has (nothing to compare: no confidence
    claimed).
    """

    pose: np.ndarray  # [6] fused estimate of the probe pose (angles, like frame_pose's, folded into [-180, 180))
    move: np.ndarray  # [6] the suggested move: from the estimate to the view (or the planner's choice); zeros
    # while the session asks the sonographer to hold still for another look
    arrived: bool  # the estimate is within the arrival threshold on every component
    frames_fused: int  # how many estimates the fused one rests on (1 + carried-forward ones)
    spread_mm: Optional[float]
    spread_deg: Optional[float]
    frame_pose: np.ndarray  # [6] this frame's own estimate, before fusion


class GuidanceSession:
    """One guidance session on one patient: call :meth:`update` with every frame and the move made since the last.

    ``session = GuidanceSession.from_checkpoint("best.ckpt", history=4)``; then per frame
    ``guidance = session.update(frame, executed_move)`` with ``executed_move`` None on the first frame or whenever
    the motion since the last frame is unknown (the history is then dropped). With ``history`` > 0 it first asks
    to hold still (a zero move) until ``history + 1`` looks at the pose agree (see the module docstring). A session
    holds one probe's history and takes no lock: one session per probe, updated from one thread at a time.
    """

    def __init__(self, predictor: PosePredictor, settings: Optional[SessionSettings] = None):
        if isinstance(predictor, (str, os.PathLike)):
            raise TypeError(f"GuidanceSession takes a Predictor, got the path {str(predictor)!r}; for a checkpoint "
                            "file use GuidanceSession.from_checkpoint(path)")
        missing = [name for name in ("composition", "can_imagine", "look") if not hasattr(predictor, name)]
        if missing:  # None, a model, a dict: one line here, not an AttributeError in the first update
            raise TypeError(f"GuidanceSession takes a Predictor (Predictor.from_checkpoint(path) gives one), got "
                            f"{type(predictor).__name__}, which has no {', '.join(missing)}")
        if settings is not None and not isinstance(settings, SessionSettings):
            raise TypeError(f"settings must be SessionSettings(history=..., planner=...), got "
                            f"{type(settings).__name__}")
        settings = settings or SessionSettings()
        if predictor.composition not in COMPOSITION_MODES:
            raise ConfigError(f"unknown composition {predictor.composition!r} (valid: {', '.join(COMPOSITION_MODES)})")
        if settings.planner == "imagine" and not predictor.can_imagine:
            raise ConfigError("planner 'imagine' needs a world model; this checkpoint is a 'direct' model "
                              "(use planner 'direct')")
        self.predictor = predictor
        self.settings = settings
        self._estimates = torch.zeros(0, 6, dtype=torch.float64)  # [k, 6] past estimates, carried to the last frame
        # With a sequential estimator, per estimate above: the frame's pooled features [k, 512], its own estimate
        # and the move accumulated since it [k, 6]; kept and dropped with the estimates.
        self._features: List[torch.Tensor] = []
        self._own = torch.zeros(0, 6, dtype=torch.float64)
        self._moves = torch.zeros(0, 6, dtype=torch.float64)
        # The last (fused pose, suggested move, move made since), float64 [6] each: the move the estimates above
        # chose, and how far the probe has gone since (over frames the model could not read too).
        self._last: Optional[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = None

    def __repr__(self) -> str:
        return f"GuidanceSession({self.settings}, looks held {len(self._estimates)}, {self.predictor!r})"

    @classmethod
    def from_checkpoint(cls, path: Union[str, os.PathLike], device: Union[str, torch.device] = "auto",
                        precision: str = "32", **settings) -> "GuidanceSession":
        """A session on a trained checkpoint; ``precision`` is the :class:`~cardiac_dreamer.evaluation.Predictor`'s
        ("bf16" for speed on hardware that has it), ``settings`` are :class:`SessionSettings` fields."""
        from ..evaluation.predictor import load_model

        checked = SessionSettings(**settings)  # a bad setting is refused before the model loads
        return cls(load_model(path, device, precision), checked)

    @property
    def sequence_frames(self) -> int:
        """K, the most frames the checkpoint's trained sequential estimator fuses; 0 without one."""
        return _sequence_frames(self.predictor)

    @property
    def fuses_sequentially(self) -> bool:
        """Whether past looks are fused by the checkpoint's sequential estimator rather than the median."""
        return bool(self.sequence_frames) and self.settings.history > 0

    @property
    def composition(self) -> str:
        return self.predictor.composition

    def reset(self) -> None:
        """Forget every past frame (a new patient, or the probe left the skin)."""
        self._estimates, self._own, self._moves = self._estimates[:0], self._own[:0], self._moves[:0]
        self._features = []
        self._last = None

    def update(self, image, executed_move: Optional[Sequence[float]] = None) -> Guidance:
        """Fuse this frame with the independent history carried through ``executed_move`` (mm, degrees) and say
        where to go: a zero move while it asks the sonographer to hold still for another look.

        The move is applied before the frame is read, so a frame the model cannot read (its error propagates)
        still leaves the history where the probe is: a loop may skip that frame and pass the next one with the
        move made since.
        """
        self._carry(executed_move)
        look = self.predictor.look(image)  # the frame's one pass through the backbone
        frame_pose = np.asarray(look.pose, dtype=np.float64).reshape(6)
        if not np.isfinite(frame_pose).all():  # kept, it would poison the history's next estimates too
            raise DataError(f"the model's estimate of this frame is not finite ({frame_pose.tolist()}): the frame is "
                            "skipped; if every frame reads so, the checkpoint's weights or statistics are damaged")
        current = torch.from_numpy(frame_pose)[None]  # [1, 6]
        keep = self.settings.history + 1
        self._estimates = torch.cat([self._estimates, current])[-keep:]  # [k + 1, 6]
        # [6]; the mean of the middle two for an even count; angles read within 180 deg of this frame's, so looks
        # of 179 and -179 deg fuse to 180, not 0
        pose = np.median(unwrapped_poses(self._estimates.numpy(), around=frame_pose), axis=0)
        if self.fuses_sequentially:
            pose = self._sequential(look, current, keep, pose)
        if len(self._estimates) <= self.settings.history:
            arrived, move = False, np.zeros(6)  # hold still: the decision waits for history + 1 looks
        else:
            arrived, move = self.within_arrival(pose), suggested_move(pose, self.composition)
            if self.settings.planner == "imagine":
                move = self._imagine_best(look, move)
        # copies: the caller owns the returned arrays (a loop may clip the move in place before making it)
        self._last = (torch.tensor(pose), torch.tensor(move), torch.zeros(6, dtype=torch.float64))
        fused = self._fused_estimates()
        spread_mm, spread_deg = self._spread(pose, fused)
        return Guidance(pose=folded_poses(pose), move=move, arrived=arrived, frames_fused=len(fused),
                        spread_mm=spread_mm, spread_deg=spread_deg, frame_pose=folded_poses(frame_pose))

    def within_arrival(self, pose: np.ndarray) -> bool:
        """Every translation within ``arrival_mm`` and every angle (folded into [-180, 180)) within ``arrival_deg``."""
        return within(pose, self.settings.arrival_mm, self.settings.arrival_deg)

    def _carry(self, executed_move: Optional[Sequence[float]]) -> None:
        """Move every past estimate through the move executed since; unknown motion (None) drops them, and so does
        the move they chose (:meth:`_made_the_suggested_move`). A move that is not one (NaN from a tracker's dropout)
        is unknown motion too: the history is dropped, then the :class:`DataError` raised, so a loop that skips the
        frame never fuses looks the probe has moved away from."""
        if executed_move is None:
            self.reset()
            return
        try:
            move = as_moves(executed_move, what="executed_move")
        except DataError:
            self.reset()
            raise
        if self._last is not None:
            pose, suggested, moved = self._last
            self._last = (pose, suggested, apply_move(moved, move, self.composition))
            if self._made_the_suggested_move(*self._last):
                self.reset()
                return
        if len(self._estimates):
            self._estimates = apply_move(self._estimates, move.expand_as(self._estimates), self.composition)
            self._moves = apply_move(self._moves, move.expand_as(self._moves), self.composition)  # accumulated

    def _sequential(self, look: FrameLook, current: torch.Tensor, keep: int, median: np.ndarray) -> np.ndarray:
        """The sequential estimator's pose from this frame and the last K-1 of the kept history (the same frames as
        the median, so the move being judged is never counted); the median (this frame's own estimate) alone."""
        self._features = (self._features + [look.pooled])[-keep:]
        self._own = torch.cat([self._own, current])[-keep:]
        self._moves = torch.cat([self._moves, torch.zeros_like(current)])[-keep:]
        if len(self._own) < 2:
            return median
        frames = self.sequence_frames  # the current frame first, then back in time
        features = torch.stack(self._features[::-1][:frames])  # [T, 512]
        return self.predictor.fuse(features, self._own.flip(0)[:frames].numpy(), self._moves.flip(0)[:frames].numpy())

    def _made_the_suggested_move(self, pose: torch.Tensor, suggested: torch.Tensor, moved: torch.Tensor) -> bool:
        """Whether the (non-zero) move ``moved`` since the fused ``pose`` chose ``suggested`` would be judged right
        by the estimates that chose it: carried through it, they read "arrived" (the direct planner's move, made by
        any planner), or it is the suggested move, within the arrival threshold plus half of each of its components
        (the imagine planner's, or any planner's made by a hand that overshoots or falls short: a 40 mm move made
        as 48 mm is the move those looks chose, and carried through it they would read "near the view")."""
        if not moved.any() or not suggested.any():
            return False
        landed = apply_move(pose, moved, self.composition)
        intended = apply_move(pose, suggested, self.composition)
        missed = np.abs(folded_poses(move_between(intended, landed, self.composition).numpy()))  # [6]
        tolerance = self._thresholds() + 0.5 * np.abs(folded_poses(suggested.numpy()))
        return bool(self.within_arrival(landed.numpy()) or (missed <= tolerance).all())

    def _fused_estimates(self) -> torch.Tensor:
        """``[k, 6]``: the estimates the fused pose rests on (the sequential estimator reads at most its K)."""
        frames = self.sequence_frames if self.fuses_sequentially else 0
        return self._estimates[-frames:] if frames else self._estimates

    def _spread(self, pose: np.ndarray, fused: torch.Tensor) -> tuple[Optional[float], Optional[float]]:
        if len(fused) < 2:
            return None, None
        estimates = fused.numpy()  # [k, 6]
        centre = np.broadcast_to(pose, estimates.shape)
        return _rms(translation_errors(centre, estimates)), _rms(rotation_errors(centre, estimates))

    def _imagine_best(self, look: FrameLook, suggested: np.ndarray) -> np.ndarray:
        """The candidate move whose outcome, as the world model imagines it from this frame, is nearest the view.

        Candidates: the suggested move scaled by :data:`PLAN_SCALES`. Distance to the view: the largest component
        in units of the arrival threshold, the same test "arrived" applies.
        """
        candidates = plan_candidates(suggested)  # [K, 6]
        imagined = np.asarray(look.imagine(candidates))  # [K, 6], from the frame's features
        return candidates[int(np.argmin(self._threshold_units(imagined)))]

    def _threshold_units(self, poses: np.ndarray) -> np.ndarray:
        """``[K, 6] -> [K]``: the largest |component| / its arrival threshold (inf past a threshold of 1e-320)."""
        with np.errstate(over="ignore"):
            return (np.abs(folded_poses(poses)) / self._thresholds()).max(-1)

    def _thresholds(self) -> np.ndarray:
        """``[6]``: the arrival threshold of each component (mm, then degrees)."""
        return np.repeat([self.settings.arrival_mm, self.settings.arrival_deg], 3)


def plan_candidates(suggested: np.ndarray) -> np.ndarray:
    """``[6] -> [K, 6]``: the suggested move scaled by each of :data:`PLAN_SCALES` (K = 5)."""
    return np.outer(PLAN_SCALES, suggested)


def suggested_move(pose: np.ndarray, composition: str) -> np.ndarray:
    """The move that takes the probe from ``pose`` to the view: ``-pose`` (additive), the inverse transform (se3);
    angles the short way round (a pose of 185 deg turns by 175, not -185). DataError unless ``pose`` is 6 finite
    numbers."""
    pose = as_moves(pose, what="pose")
    return folded_poses(undo_move(torch.zeros_like(pose), pose, composition).numpy())


def within(poses: np.ndarray, limit_mm: float, limit_deg: float) -> Union[bool, np.ndarray]:
    """``[..., 6]``: every |translation| <= ``limit_mm`` and every |angle| <= ``limit_deg`` (angles folded; a NaN
    component is not within). DataError for anything but poses of 6 numbers: 5 numbers would read as arrived."""
    try:
        shape = np.shape(np.asarray(poses, dtype=np.float64))
    except (TypeError, ValueError):
        shape = ()
    if not shape or shape[-1] != 6:
        raise DataError(f"poses must be [..., 6] numbers (mm, degrees), got {reprlib.repr(poses)}")
    folded = np.abs(folded_poses(poses))
    inside = (folded[..., :3] <= limit_mm).all(-1) & (folded[..., 3:] <= limit_deg).all(-1)
    return bool(inside) if np.ndim(inside) == 0 else inside


def _rms(values: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(values))))




__all__ = [
    "ARRIVAL_DEG", "ARRIVAL_MM", "Guidance", "GuidanceSession", "PLANNERS", "SessionSettings", "suggested_move",
    "within",
]
