"""``load_run(path)``: a trained checkpoint (or a run directory) read into its model, config and patient split.

The evaluator, the predictor and closed-loop navigation all start from a trained model; reading one is written
here once, below all three, so none of them imports another to get it.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Union

from ..io.checkpoint import ModelCheckpoint, load_checkpoint
from ..io.fileio import is_text_path
from ..config import Config
from ..errors import CheckpointError
from ..data.splits import PatientSplit
from ..models.registry import model_from_checkpoint
from ..models.system import GuidanceModel
from ..io.run_dir import RunDirectory

PathLike = Union[str, os.PathLike]


@dataclass(frozen=True)
class LoadedRun:
    """A trained model (eval mode, on the CPU) with the config it was trained with and its checkpoint's record."""

    model: GuidanceModel
    config: Config
    checkpoint: ModelCheckpoint  # epoch, metrics, data_dir, grouping as saved
    path: Path  # the checkpoint file that was read

    @property
    def split(self) -> Optional[PatientSplit]:
        """The patients the model trained, validated and was never tested on; None if the checkpoint has none."""
        return PatientSplit.from_dict(self.checkpoint.split) if self.checkpoint.split is not None else None


def load_run(path: PathLike) -> LoadedRun:
    """Read a ``.ckpt`` written by training (best, last, top-k or final), or a run directory's deployed checkpoint
    (``averaged.ckpt`` when the run wrote one, else ``best.ckpt``).

    Never unpickles code; CheckpointError naming the file if it is not a checkpoint or its weights do not fit the
    model its config describes.
    """
    if not is_text_path(path) or not os.fspath(path).strip():
        # "" would be the current directory, which may well hold a run: another model than the one meant
        raise CheckpointError(f"a checkpoint is the path of a .ckpt file or a run directory, got {path!r}")
    path = Path(path)
    if path.is_dir():
        path = _deployed_in(path)
    checkpoint = load_checkpoint(path)
    model = model_from_checkpoint(checkpoint, str(path))
    config = Config.from_stored(checkpoint.config, source=f"{path}: config")
    return LoadedRun(model=model, config=config, checkpoint=checkpoint, path=path)


def _deployed_in(folder: Path) -> Path:
    """The deployed checkpoint of a run directory, or of its ``checkpoints/`` folder given instead."""
    run = RunDirectory(folder.parent if folder.name == "checkpoints" else folder)
    if not run.deployed_checkpoint.is_file():
        raise CheckpointError(f"{folder}: a directory that holds no run's checkpoints (no checkpoints/best.ckpt or "
                              "averaged.ckpt); pass a .ckpt file or a run directory")
    return run.deployed_checkpoint
