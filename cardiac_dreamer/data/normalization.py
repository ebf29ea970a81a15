"""Per-axis standardization of poses and of moves, each with its own statistics, fitted on training data only.

Poses (absolute probe positions) and moves (small differences between two poses) live on very different scales:
sharing one set of statistics, as a public implementation did, squashes the moves to near zero and starves the
model of its conditioning signal. So the two are standardized separately, per axis.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Dict, Iterable, List, Mapping, Optional, Sequence, TypeVar

import numpy as np
import torch

from ..errors import DataError
from ..geometry import AXIS_NAMES, AXIS_UNITS, unwrapped_poses
from .records import TransitionRecord

MIN_STD = 1e-6  # an axis that never varies gets std 1.0 (values only shifted), never a division by ~0

Array = TypeVar("Array", torch.Tensor, np.ndarray)


@dataclass
class AxisStats:
    """Mean and standard deviation of the six axes ``[x, y, z, roll, pitch, yaw]``."""

    mean: List[float]
    std: List[float]

    def __post_init__(self) -> None:
        for name in ("mean", "std"):
            values = getattr(self, name)
            if len(values) != 6 or not all(isinstance(v, (int, float)) and math.isfinite(v) for v in values):
                raise DataError(f"normalization stats: {name} must be 6 finite numbers, got {values!r}")
        if min(self.std) <= 0:
            raise DataError(f"normalization stats: std must be > 0, got {self.std!r}")
        self.mean = [float(v) for v in self.mean]
        self.std = [float(v) for v in self.std]

    @classmethod
    def fit(cls, values: np.ndarray) -> "AxisStats":
        """Statistics of ``values`` ``[N, 6]`` (float64, population std, floored)."""
        values = np.asarray(values, dtype=np.float64)
        std = values.std(axis=0)
        return cls(mean=values.mean(axis=0).tolist(), std=np.where(std < MIN_STD, 1.0, std).tolist())

    def normalize(self, x: Array) -> Array:
        """``[..., 6]`` physical units -> standardized, in ``x``'s dtype and on its device."""
        mean, std = self._like(x)
        return (x - mean) / std

    def denormalize(self, x: Array) -> Array:
        """``[..., 6]`` standardized -> physical units (mm, degrees)."""
        mean, std = self._like(x)
        return x * std + mean

    def _like(self, x: Array):
        if isinstance(x, torch.Tensor):
            dtype = x.dtype if x.is_floating_point() else torch.float32
            return (torch.tensor(v, dtype=dtype, device=x.device) for v in (self.mean, self.std))
        dtype = x.dtype if np.issubdtype(x.dtype, np.floating) else np.float64
        return (np.asarray(v, dtype=dtype) for v in (self.mean, self.std))

    def to_dict(self) -> Dict[str, List[float]]:
        return {"mean": list(self.mean), "std": list(self.std)}

    @classmethod
    def from_dict(cls, values: Mapping[str, Sequence[float]]) -> "AxisStats":
        try:
            return cls(mean=list(values["mean"]), std=list(values["std"]))
        except (KeyError, TypeError):
            raise DataError(f"normalization stats: expected {{'mean': [6], 'std': [6]}}, got {values!r}") from None


@dataclass
class NormalizationStats:
    """Statistics for poses (``at1``, ``at2``) and for moves (``action_change``)."""

    pose: AxisStats
    move: AxisStats

    @classmethod
    def fit(cls, records: Sequence[TransitionRecord], labelled_patients: Optional[Iterable[str]] = None
            ) -> "NormalizationStats":
        """Fit on the given records, which must be the training split only (anything else leaks). Pose statistics
        come from the ``labelled_patients``' records only when given: the others' labels are never used."""
        if not records:
            raise DataError("normalization stats: no training records to fit on")
        labelled = records if labelled_patients is None else \
            [r for r in records if r.patient_id in set(labelled_patients)]
        if not labelled:
            raise DataError("normalization stats: no labelled training records to fit the pose statistics on")
        moves = [r.action_change for r in records]
        return cls(pose=AxisStats.fit(unwrapped_poses(_poses(labelled))), move=AxisStats.fit(np.array(moves)))

    @classmethod
    def identity(cls) -> "NormalizationStats":
        """Mean 0, std 1: values pass through unchanged (for tests and untrained models)."""
        return cls(pose=AxisStats([0.0] * 6, [1.0] * 6), move=AxisStats([0.0] * 6, [1.0] * 6))

    def to_dict(self) -> Dict[str, Dict[str, List[float]]]:
        return {"pose": self.pose.to_dict(), "move": self.move.to_dict()}

    @classmethod
    def from_dict(cls, values: Mapping[str, Mapping[str, Sequence[float]]]) -> "NormalizationStats":
        if not isinstance(values, Mapping) or "pose" not in values or "move" not in values:
            raise DataError(f"normalization stats: expected keys 'pose' and 'move', got {values!r}")
        return cls(pose=AxisStats.from_dict(values["pose"]), move=AxisStats.from_dict(values["move"]))


def unvarying_pose_axes(records: Sequence[TransitionRecord]) -> List[str]:
    """The axes whose pose labels are the same in every record, as ``"roll (always 0 deg)"``: an exporter that
    leaves an axis at 0 trains a model that learns nothing there and reports n/a for that axis's R2."""
    if not records:
        return []
    poses = _poses(records)
    return [f"{name} (always {value:g} {unit})" for name, unit, value, spread
            in zip(AXIS_NAMES, AXIS_UNITS, poses[0], poses.std(axis=0)) if spread < MIN_STD]


def _poses(records: Sequence[TransitionRecord]) -> np.ndarray:
    """``[2N, 6]`` float64: every at1 and at2, the poses the pose statistics describe."""
    return np.array([r.at1 for r in records] + [r.at2 for r in records], dtype=np.float64)
