"""The checkpoint file format: two typed layouts, written atomically and read back without trusting the file.

Both layouts are plain dicts of tensors, state dicts and primitives, so they load with
``torch.load(weights_only=True)``, which cannot run code:

* :class:`ModelCheckpoint` (top-k files, ``best.ckpt``, ``final_model.ckpt``): weights (the normalization
  statistics are model buffers, so they travel inside ``model_state``), the resolved config, the patient split, the
  data directory and the epoch's metrics: what evaluation and inference need, at a third of the size of
* :class:`TrainingState` (``last.ckpt``): the same plus everything that decides the future of the run (optimizer,
  schedule, scaler, early stopping, top-k registry, RNG states, the task's EMA target), so a resume is exact.

Training writes them and evaluation, inference and resume read them; this leaf module is the only place that knows
the keys. :meth:`ModelCheckpoint.from_dict` checks every field's type before anything is built from it.
"""
from __future__ import annotations

import dataclasses
import os
import pickle
import re
import warnings
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Union

import torch

from ..errors import CheckpointError, OutputError, error_text
from .fileio import atomic_open, cannot_write, os_reason, require_regular_file
from ..version import __version__

FORMAT_NAME = "cardiac_dreamer.io.checkpoint"
FORMAT_VERSION = 2  # 2: world model with move conditioning on every token; poses in physical units at the edge
PathLike = Union[str, os.PathLike]


@dataclass
class ModelCheckpoint:
    """A trained model and what it was trained on."""

    KIND = "model"

    config: Dict[str, Any]  # Config.to_dict()
    model_state: Dict[str, torch.Tensor]
    epoch: int
    global_step: int
    metrics: Dict[str, float] = field(default_factory=dict)
    split: Optional[Dict[str, List[str]]] = None  # PatientSplit.to_dict(): the patients the model never saw
    data_dir: Optional[str] = None
    grouping: Optional[Dict[str, str]] = None  # folder -> patient id
    library_version: str = __version__
    target_encoder: Optional[Dict[str, torch.Tensor]] = None  # the latent target's state dict; absent in old files
    run_id: Optional[str] = None  # the run that wrote it (experiment_config.json holds the same); absent in old files

    def to_dict(self) -> Dict[str, Any]:
        values = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        return {"format": FORMAT_NAME, "format_version": FORMAT_VERSION, "kind": self.KIND, **values}

    @classmethod
    def from_dict(cls, payload: Mapping[str, Any], source: str = "checkpoint") -> "ModelCheckpoint":
        """Check the format marker, the version and every field's type; CheckpointError naming what is wrong."""
        _check_format(payload, source)
        kind = payload.get("kind")
        layout = {TrainingState.KIND: TrainingState, ModelCheckpoint.KIND: ModelCheckpoint}.get(kind)
        if layout is None or not issubclass(layout, cls):
            if kind == ModelCheckpoint.KIND and cls is TrainingState:
                raise CheckpointError(f"{source}: a model checkpoint (weights, no optimizer state) cannot be resumed; "
                                      "resume from checkpoints/last.ckpt of its run")
            raise CheckpointError(f"{source}: unknown checkpoint kind {kind!r}")
        values = {}
        for spec in dataclasses.fields(layout):
            if spec.name not in payload:
                if spec.default is dataclasses.MISSING and spec.default_factory is dataclasses.MISSING:
                    raise CheckpointError(f"{source}: checkpoint lacks {spec.name!r}; it cannot be used")
                continue
            values[spec.name] = _checked(spec.name, payload[spec.name], source)
        return layout(**values)


@dataclass
class TrainingState(ModelCheckpoint):
    """A model checkpoint plus the whole state of the training run, for an exact resume."""

    KIND = "training_state"

    optimizer_state: Dict[str, Any] = field(default_factory=dict)
    scheduler_state: Dict[str, Any] = field(default_factory=dict)
    scaler_state: Dict[str, Any] = field(default_factory=dict)
    early_stopping: Dict[str, Any] = field(default_factory=dict)
    top_k: Dict[str, Any] = field(default_factory=dict)
    task_state: Dict[str, Any] = field(default_factory=dict)  # e.g. the EMA latent-target encoder
    rng: Dict[str, Any] = field(default_factory=dict)
    nonfinite_steps: int = 0
    consecutive_nonfinite: int = 0  # the streak that stops a diverging run; absent in older files


# field -> (accepted types, description): what from_dict enforces before anything trusts a value.
_FIELD_TYPES = {
    "config": (dict, "a dict"),
    "model_state": (dict, "a dict of tensors"),
    "epoch": (int, "an integer"),
    "global_step": (int, "an integer"),
    "metrics": (dict, "a dict"),
    "split": ((dict, type(None)), "a dict of patient lists"),
    "data_dir": ((str, type(None)), "a string"),
    "grouping": ((dict, type(None)), "a dict"),
    "library_version": (str, "a string"),
    "target_encoder": ((dict, type(None)), "a dict of tensors"),
    "run_id": ((str, type(None)), "a string"),
    "optimizer_state": (dict, "a dict"),
    "scheduler_state": (dict, "a dict"),
    "scaler_state": (dict, "a dict"),
    "early_stopping": (dict, "a dict"),
    "top_k": (dict, "a dict"),
    "task_state": (dict, "a dict"),
    "rng": (dict, "a dict"),
    "nonfinite_steps": (int, "an integer"),
    "consecutive_nonfinite": (int, "an integer"),
}


def _checked(name: str, value: Any, source: str) -> Any:
    types, description = _FIELD_TYPES[name]
    if not isinstance(value, types) or isinstance(value, bool):
        raise CheckpointError(f"{source}: {name} must be {description}, got {type(value).__name__}")
    if name in ("model_state", "target_encoder") and value is not None:
        for key, tensor in value.items():
            if not isinstance(key, str) or not isinstance(tensor, torch.Tensor):
                raise CheckpointError(f"{source}: {name} entry {key!r} is a {type(tensor).__name__}, "
                                      "not a tensor")
    if name in ("epoch", "global_step", "nonfinite_steps") and value < -1:
        raise CheckpointError(f"{source}: {name} must be >= -1, got {value}")
    return value


def _check_format(payload: Any, source: str) -> None:
    if not isinstance(payload, dict) or payload.get("format") != FORMAT_NAME:
        raise CheckpointError(
            f"{source}: not a cardiac_dreamer checkpoint (no '{FORMAT_NAME}' format marker); "
            f"it holds {describe_foreign(payload)}"
        )
    version = payload.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise CheckpointError(f"{source}: cardiac_dreamer checkpoint with an invalid format version {version!r}")
    if version > FORMAT_VERSION:
        raise CheckpointError(
            f"{source}: checkpoint format version {version} is newer than this library reads ({FORMAT_VERSION}); "
            f"it was written by cardiac_dreamer {payload.get('library_version', '?')}, upgrade to load it"
        )
    if version < FORMAT_VERSION:
        raise CheckpointError(
            f"{source}: checkpoint format version {version} was written by cardiac_dreamer "
            f"{payload.get('library_version', '?')}, whose model this version no longer builds; retrain with "
            f"cardiac_dreamer {__version__}"
        )


def save_checkpoint(path: PathLike, checkpoint: ModelCheckpoint) -> Path:
    """Write ``checkpoint`` atomically; a failure (full disk...) leaves the previous file intact."""
    path = Path(path)
    try:
        with atomic_open(path, "wb") as stream:
            torch.save(checkpoint.to_dict(), stream)
    except OutputError as error:
        raise CheckpointError(f"{error}; earlier checkpoints are intact") from None
    except RuntimeError as error:  # torch's zip writer wraps the OSError of a full disk in a RuntimeError
        cause = error.__context__ if isinstance(error.__context__, OSError) else error
        raise CheckpointError(f"{cannot_write(path, cause)}; earlier checkpoints are intact") from None
    return path


def load_checkpoint(path: PathLike) -> ModelCheckpoint:
    """A :class:`ModelCheckpoint` or :class:`TrainingState`, checked; never unpickles code (``weights_only``)."""
    return ModelCheckpoint.from_dict(_load_payload(Path(path)), source=str(path))


def load_training_state(path: PathLike) -> TrainingState:
    """A ``last.ckpt`` to resume from; a model checkpoint (no optimizer state) is refused before anything runs."""
    return TrainingState.from_dict(_load_payload(Path(path)), source=str(path))


def _load_payload(path: Path) -> Any:
    if path.is_dir():
        raise CheckpointError(f"{path}: a directory, not a checkpoint file (a run keeps its own in "
                              "checkpoints/: last.ckpt to resume, averaged.ckpt or best.ckpt to evaluate)")
    require_regular_file(path, "checkpoint", CheckpointError)
    try:  # is_zipfile reads a file it may not open as "not a zip file"
        with open(path, "rb"):
            pass
    except OSError as error:
        raise CheckpointError(f"{path}: cannot read the checkpoint ({os_reason(error)})") from None
    if not zipfile.is_zipfile(path):  # torch's own complaint would advise re-saving with a serialization option
        raise CheckpointError(f"{path}: not a readable PyTorch checkpoint (the file is empty, cut short or not a "
                              "PyTorch archive)")
    damaged = _damaged_member(path)
    if damaged:
        raise CheckpointError(f"{path}: damaged: its part {damaged} does not match its checksum (a disk or copy "
                              "error); use another checkpoint of the run")
    try:
        with warnings.catch_warnings():  # torch warns about odd pickle protocols before refusing them itself
            warnings.simplefilter("ignore", UserWarning)
            return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except pickle.UnpicklingError as error:
        raise CheckpointError(
            f"{path}: refused to load: the file holds pickled Python objects, not plain tensors "
            f"({unpickler_complaint(error)}); nothing in it was run"
        ) from None
    except Exception as error:  # on a damaged file the weights-only unpickler raises KeyError, IndexError, ...
        detail = f"{type(error).__name__}: {str(error).strip()}".splitlines()[0][:160]
        raise CheckpointError(f"{path}: not a readable PyTorch checkpoint ({detail})") from None


def _damaged_member(path: Path) -> Optional[str]:
    """The first archive member whose bytes fail their CRC, or None. torch.load does not check: a checkpoint with
    flipped bytes in a weight loaded and predicted nonsense (poses of ~40,000 deg)."""
    try:
        with zipfile.ZipFile(path) as archive:
            return archive.testzip()
    except Exception as error:  # a broken directory or member: BadZipFile, zlib.error, EOFError...
        return f"({error_text(error, 120, named=True)})"


# torch's words for what its weights-only unpickler refused: a class (a whole pickled model), or a blocked function
_REFUSED_GLOBAL = (re.compile(r"WeightsUnpickler error:\s*(.+?)(?:\. Please|\n|$)"),
                   re.compile(r"(Trying to load unsupported GLOBAL .+?)\.?(?:\n|$)"))


def unpickler_complaint(error: pickle.UnpicklingError) -> str:
    """The part of torch's long weights-only message that says what was refused, e.g. ``GLOBAL builtins.exec``."""
    for pattern in _REFUSED_GLOBAL:
        found = pattern.search(str(error))
        if found:
            return " ".join(found.group(1).split())
    return "unsupported content"


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
    keys = ", ".join(map(repr, list(payload)[:5])) + (", ..." if len(payload) > 5 else "")
    return f"a dict with keys {keys}" if payload else "an empty dict"
