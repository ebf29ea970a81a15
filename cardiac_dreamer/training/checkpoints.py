"""Checkpoint files: atomic save, safe load, and the top-k registry.

Two kinds of file share one format (a dict of tensors, state dicts and primitives, loadable with
``torch.load(weights_only=True)``):

* a *training state* (``last.ckpt``): everything that decides the future of the run — weights, optimizer,
  scheduler, scaler, counters, early-stopping and top-k state, RNG states — so a resume is exact;
* a *model checkpoint* (top-k files, ``best.ckpt``, ``final_model.ckpt``): weights, config, normalization
  statistics, patient split and metrics — what evaluation and inference need, at a third of the size (no
  optimizer moments).
"""
from __future__ import annotations

import logging
import math
import os
import pickle
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Union

import torch

from .. import __version__
from ..atomic import atomic_open, link_or_copy, remove_stale_temporaries
from ..errors import CheckpointError

log = logging.getLogger(__name__)

FORMAT_NAME = "cardiac_dreamer.checkpoint"
FORMAT_VERSION = 1
MONITOR = "val_main_task_loss"
PathLike = Union[str, os.PathLike]
_TOPK_NAME = re.compile(r"^cardiac_dreamer-epoch=(\d+)-val_main_task_loss=([0-9.]+)\.ckpt$")


def save_checkpoint(path: PathLike, payload: Dict[str, Any]) -> Path:
    """Write ``payload`` (with format and version stamped in) atomically; an error leaves the old file intact."""
    path = Path(path)
    payload = {"format": FORMAT_NAME, "format_version": FORMAT_VERSION, "library_version": __version__, **payload}
    try:
        with atomic_open(path, "wb") as stream:
            torch.save(payload, stream)
    except OSError as error:
        raise CheckpointError(f"{path}: cannot write checkpoint ({error.strerror or error}); "
                              "earlier checkpoints are intact") from None
    return path


def load_checkpoint(path: PathLike, map_location: Union[str, torch.device] = "cpu") -> Dict[str, Any]:
    """Load one of our checkpoints without ever unpickling code (``weights_only=True``)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found")
    try:
        with warnings.catch_warnings():  # torch warns about odd pickle protocols before refusing them itself
            warnings.simplefilter("ignore", UserWarning)
            payload = torch.load(path, map_location=map_location, weights_only=True, mmap=True)
    except pickle.UnpicklingError as error:
        raise CheckpointError(
            f"{path}: refused to load: the file holds pickled Python objects, not plain tensors "
            f"({_unpickler_complaint(error)}); nothing in it was run"
        ) from None
    except Exception as error:  # on a damaged file the weights-only unpickler raises KeyError, IndexError, ...
        detail = f"{type(error).__name__}: {str(error).strip()}".splitlines()[0][:160]
        raise CheckpointError(f"{path}: not a readable PyTorch checkpoint ({detail})") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT_NAME:
        raise CheckpointError(
            f"{path}: not a cardiac_dreamer checkpoint (no '{FORMAT_NAME}' format marker); "
            f"it holds {describe_foreign(payload)}"
        )
    version = payload.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise CheckpointError(f"{path}: cardiac_dreamer checkpoint with an invalid format version {version!r}")
    if version > FORMAT_VERSION:
        raise CheckpointError(
            f"{path}: checkpoint format version {version} is newer than this library reads ({FORMAT_VERSION}); "
            f"it was written by cardiac_dreamer {payload.get('library_version', '?')}, upgrade to load it"
        )
    return payload


def load_training_state(path: PathLike) -> Dict[str, Any]:
    """A ``last.ckpt`` to resume from; a model checkpoint (no optimizer state) is refused before anything runs."""
    state = load_checkpoint(path)
    if state.get("kind") != "training_state":
        raise CheckpointError(
            f"{path}: a model checkpoint (weights, no optimizer state) cannot be resumed; "
            "resume from checkpoints/last.ckpt of its run"
        )
    return state


def _unpickler_complaint(error: pickle.UnpicklingError) -> str:
    """The part of torch's long weights-only message that says what was refused, e.g. ``GLOBAL builtins.exec``."""
    found = re.search(r"WeightsUnpickler error:\s*(.+?)(?:\. Please|\n|$)", str(error))
    return found.group(1).strip() if found else "unsupported content"


def describe_foreign(payload: Any) -> str:
    """What a file that is not one of our checkpoints holds, in a few words, so the user knows what they have."""
    if isinstance(payload, torch.Tensor):
        return f"a single tensor of shape {tuple(payload.shape)}"
    if not isinstance(payload, dict):
        return f"a {type(payload).__name__}"
    if "pytorch-lightning_version" in payload:
        return f"a PyTorch Lightning checkpoint (Lightning {payload['pytorch-lightning_version']})"
    if payload and all(isinstance(value, torch.Tensor) for value in payload.values()):
        return f"a bare state dict of {len(payload)} tensors (weights without config or normalization)"
    keys = ", ".join(map(str, list(payload)[:5])) + (", ..." if len(payload) > 5 else "")
    return f"a dict with keys {keys}" if payload else "an empty dict"


def topk_filename(epoch: int, score: float) -> str:
    return f"cardiac_dreamer-epoch={epoch:02d}-{MONITOR}={score:.4f}.ckpt"


@dataclass
class TopKCheckpoints:
    """The best ``k`` checkpoints by ``val_main_task_loss`` (lower is better), plus ``best.ckpt`` linked to the first.

    Its state is saved in every training state and reconciled with the files on disk on resume, so a resumed run
    never keeps more than ``k`` files nor lets a worse model take ``best.ckpt``.
    """

    directory: Path
    k: int = 3
    entries: List[Dict[str, Any]] = field(default_factory=list)  # {"epoch", "score", "file"}, best first

    @property
    def best_path(self) -> Optional[Path]:
        return self.directory / self.entries[0]["file"] if self.entries else None

    @property
    def best_score(self) -> Optional[float]:
        return self.entries[0]["score"] if self.entries else None

    def qualifies(self, score: float) -> bool:
        if not math.isfinite(score):  # a NaN metric is never ranked
            return False
        return len(self.entries) < self.k or score < self.entries[-1]["score"]

    def add(self, epoch: int, score: float, save: Callable[[Path], None]) -> Optional[Path]:
        """Save a new top-k file through ``save(path)`` when ``score`` ranks; evict and delete what falls out."""
        if not self.qualifies(score):
            return None
        path = self.directory / topk_filename(epoch, score)
        save(path)
        self.entries = [e for e in self.entries if e["file"] != path.name]
        self.entries.append({"epoch": epoch, "score": float(score), "file": path.name})
        self.entries.sort(key=lambda entry: (entry["score"], entry["epoch"]))
        for evicted in self.entries[self.k:]:
            _remove(self.directory / evicted["file"])
        self.entries = self.entries[: self.k]
        link_or_copy(self.best_path, self.directory / "best.ckpt")
        return path

    def state_dict(self) -> Dict[str, Any]:
        return {"k": self.k, "entries": [dict(entry) for entry in self.entries]}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        """Restore the registry, then reconcile it with the disk: forget missing files, delete strays and the
        temporary files of saves that a kill interrupted."""
        for stale in remove_stale_temporaries(self.directory):
            log.info("removed %s: left by a save that was interrupted", stale.name)
        self.entries = [dict(e) for e in state.get("entries", []) if (self.directory / e["file"]).is_file()]
        self.entries.sort(key=lambda entry: (entry["score"], entry["epoch"]))
        for evicted in self.entries[self.k:]:
            _remove(self.directory / evicted["file"])
        self.entries = self.entries[: self.k]
        kept = {entry["file"] for entry in self.entries}
        for path in self.directory.glob("cardiac_dreamer-epoch=*.ckpt"):
            if _TOPK_NAME.match(path.name) and path.name not in kept:
                log.info("removing %s: not in the resumed run's top-%d", path.name, self.k)
                _remove(path)
        if self.entries:
            link_or_copy(self.best_path, self.directory / "best.ckpt")


def _remove(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        pass
