"""The top-k checkpoint registry: the best ``k`` model checkpoints by the monitored metric, and ``best.ckpt``.

Its state is saved in every training state and reconciled with the files on disk on resume, so a resumed run
never keeps more than ``k`` files nor lets a worse model take ``best.ckpt``. A file that falls out of the top k
stays on disk until the training state that no longer lists it is saved (:meth:`TopKCheckpoints.delete_evicted`):
a kill in between resumes from a state that still names it, and finds it.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

from ..io.fileio import link_or_copy, remove_stale_temporaries
from ..names import BEST_CHECKPOINT, parse_topk_filename, topk_filename, topk_glob

log = logging.getLogger(__name__)


@dataclass
class TopKCheckpoints:
    """The best ``k`` checkpoints by ``monitor`` (lower is better; its name goes into the file names), plus
    ``best.ckpt`` linked to the first."""

    directory: Path
    monitor: str
    k: int = 3
    entries: List[Dict[str, Any]] = field(default_factory=list)  # {"epoch", "score", "file"}, best first
    evicted: List[Path] = field(default_factory=list)  # fallen out of the top k, deleted once the state is saved

    @property
    def best_path(self) -> Optional[Path]:
        return self.paths[0] if self.entries else None

    @property
    def best_score(self) -> Optional[float]:
        return self.entries[0]["score"] if self.entries else None

    @property
    def paths(self) -> List[Path]:
        """The top-k files, best first."""
        return [self.directory / entry["file"] for entry in self.entries]

    def path_of(self, epoch: int) -> Optional[Path]:
        """The top-k file of ``epoch``, or None when that epoch did not rank (or was evicted)."""
        return next((self.directory / e["file"] for e in self.entries if e["epoch"] == epoch), None)

    def qualifies(self, score: float) -> bool:
        if not math.isfinite(score):  # a NaN metric is never ranked
            return False
        return len(self.entries) < self.k or score < self.entries[-1]["score"]

    def add(self, epoch: int, score: float, save: Callable[[Path], None]) -> Optional[Path]:
        """Save a new top-k file through ``save(path)`` when ``score`` ranks; what falls out is evicted (deleted by
        :meth:`delete_evicted`, once the training state without it is saved)."""
        if not self.qualifies(score):
            return None
        path = self.directory / topk_filename(self.monitor, epoch, score)
        save(path)
        kept = [e for e in self.entries if e["file"] != path.name]
        self._keep_best(kept + [{"epoch": epoch, "score": float(score), "file": path.name}], defer=True)
        return path

    def delete_evicted(self) -> None:
        """Delete the files evicted since the last call: call it after saving the training state."""
        for path in self.evicted:
            path.unlink(missing_ok=True)
        self.evicted = []

    def state_dict(self) -> Dict[str, Any]:
        return {"k": self.k, "entries": [dict(entry) for entry in self.entries]}

    @staticmethod
    def check_state_dict(state: Dict[str, Any]) -> None:
        """Raise ValueError unless ``state`` is a registry :meth:`state_dict` could have written: restoring a wrong one
        would delete the run's top-k files as strays."""
        entries = state["entries"]
        if not isinstance(entries, list) or not all(
                isinstance(e, dict) and isinstance(e.get("file"), str) and parse_topk_filename(e["file"])
                and isinstance(e.get("epoch"), int) and isinstance(e.get("score"), float) for e in entries):
            raise ValueError("entries must be a list of {epoch, score, file} of top-k checkpoint files")

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        """Restore the registry, then reconcile it with the disk: forget missing files, delete strays and the
        temporary files of saves that a kill interrupted."""
        for stale in remove_stale_temporaries(self.directory):
            log.info("removed %s: left by a save that was interrupted", stale.name)
        self._keep_best([dict(e) for e in state.get("entries", []) if (self.directory / e["file"]).is_file()])
        kept = {entry["file"] for entry in self.entries}
        for path in self.directory.glob(topk_glob(self.monitor)):
            if parse_topk_filename(path.name) and path.name not in kept:
                log.info("removing %s: not in the resumed run's top-%d", path.name, self.k)
                path.unlink(missing_ok=True)

    def _keep_best(self, entries: List[Dict[str, Any]], defer: bool = False) -> None:
        """Rank ``entries``, delete the files beyond the first ``k`` (or, with ``defer``, mark them evicted) and
        point ``best.ckpt`` at the first."""
        entries = sorted(entries, key=lambda entry: (entry["score"], entry["epoch"]))
        self.evicted += [self.directory / entry["file"] for entry in entries[self.k:]]
        if not defer:
            self.delete_evicted()
        self.entries = entries[: self.k]
        if self.entries:
            link_or_copy(self.best_path, self.directory / BEST_CHECKPOINT)
