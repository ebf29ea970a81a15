"""Which composition rule do the labels follow: ``at2 = at1 + move`` (additive) or ``T(at2) = T(at1) T(move)`` (se3)?

The model composes poses through the move, so its composition mode must match the data's; a mismatch silently
adds an irreducible error. This check measures how far the labels are from each rule.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence, Tuple

import torch

from ..errors import DataError
from ..geometry import COMPOSITION_MODES, apply_move, check_composition, pose_error
from .records import TransitionRecord

# What an export's rounding leaves: with at1, the move and at2 each rounded to 2 decimals, at2 - (at1 + move) is
# 0 or 0.01, which floats carry a hair above 0.01 (0.67 - 0.33 - 0.33). Beyond it, a pair follows neither rule.
TOL_MM = TOL_DEG = 0.0101


@dataclass(frozen=True)
class ConsistencyReport:
    """Largest residual of ``at2`` against each composition rule, translation (mm) and rotation (deg) apart."""

    mode: str  # the rule with the smaller residual (mm and degrees weighted alike)
    additive_residual_mm: float
    additive_residual_deg: float
    se3_residual_mm: float
    se3_residual_deg: float
    num_records: int
    breaking: int = 0  # pairs that the closer rule leaves beyond the tolerances
    worst: str = ""  # the file and entry of the pair it leaves furthest off (a typo in one entry is found there)

    def residual(self, mode: str) -> Tuple[float, float]:
        """``(max mm, max deg)`` left by ``mode``."""
        check_composition(mode)
        return getattr(self, f"{mode}_residual_mm"), getattr(self, f"{mode}_residual_deg")

    def matches(self, mode: str) -> bool:
        """Whether every label follows ``mode`` to within the tolerances (rounding in the export)."""
        mm, deg = self.residual(mode)
        return mm <= TOL_MM and deg <= TOL_DEG

    def summary(self) -> str:
        """One line, e.g. ``labels are additive (max residual 0.0000 mm / 0.0000 deg; se3 would leave ...)``."""
        other = "se3" if self.mode == "additive" else "additive"
        verdict = self.mode if self.matches(self.mode) else f"closest to {self.mode} but match neither rule"
        mm, deg = self.residual(self.mode)
        other_mm, other_deg = self.residual(other)
        outliers = "" if self.matches(self.mode) else (
            f"; {self.breaking} of the {self.num_records} pairs break it, the furthest {self.worst}")
        return (
            f"labels are {verdict} (max residual {mm:.4f} mm / {deg:.4f} deg; "
            f"{other} would leave {other_mm:.4g} mm / {other_deg:.4g} deg; {self.num_records} pairs{outliers})"
        )


def check_label_consistency(records: Sequence[TransitionRecord]) -> ConsistencyReport:
    """Compare every ``at2`` with ``at1`` composed with the move under both rules, in float64."""
    if not records:
        raise DataError("label consistency: no records to check")
    at1 = torch.tensor([r.at1 for r in records], dtype=torch.float64)  # [N, 6]
    move = torch.tensor([r.action_change for r in records], dtype=torch.float64)
    at2 = torch.tensor([r.at2 for r in records], dtype=torch.float64)
    residuals, per_pair = {}, {}
    for mode in COMPOSITION_MODES:
        residual = pose_error(apply_move(at1, move, mode), at2).abs()  # [N, 6] mm and degrees
        per_pair[mode] = torch.stack([residual[:, :3].amax(1), residual[:, 3:].amax(1)], 1)  # [N, 2] mm, deg
        residuals[f"{mode}_residual_mm"] = residual[:, :3].max().item()
        residuals[f"{mode}_residual_deg"] = residual[:, 3:].max().item()
    total = {mode: residuals[f"{mode}_residual_mm"] + residuals[f"{mode}_residual_deg"] for mode in COMPOSITION_MODES}
    closer = min(COMPOSITION_MODES, key=total.get)
    off = per_pair[closer]
    breaking = int(((off[:, 0] > TOL_MM) | (off[:, 1] > TOL_DEG)).sum())
    return ConsistencyReport(mode=closer, num_records=len(records), breaking=breaking,
                             worst=records[int(off.sum(1).argmax())].where(), **residuals)
