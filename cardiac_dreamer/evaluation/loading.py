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
from ..config import Config
from ..data.splits import PatientSplit
from ..models.registry import model_from_checkpoint
from ..models.system import GuidanceModel
from ..io.run_dir import checkpoint_file

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
    path = checkpoint_file(path)
    checkpoint = load_checkpoint(path)
    model = model_from_checkpoint(checkpoint, str(path))
    config = Config.from_stored(checkpoint.config, source=f"{path}: config")
    return LoadedRun(model=model, config=config, checkpoint=checkpoint, path=path)
