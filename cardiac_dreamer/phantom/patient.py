"""``PhantomPatient``: one phantom heart that renders a B-mode frame at any 6-DOF probe pose.

Why public: the generator writes datasets with it, and a closed-loop simulator can ask it for the frame a model's
suggested move would show. The patient is a pure function of ``(index, seed)``, so a folder's ``phantom.json``
(a few numbers) is enough to rebuild it.

Random streams, all ``np.random.default_rng`` seeded with a list (a tag keeps the streams apart):

* anatomy and target view: ``[seed, index, 1]``;
* trajectory of the written dataset: ``[seed, index, 2]``;
* speckle of written frame ``frame``: ``[seed, index, 3, frame]`` (:meth:`PhantomPatient.frame_rng`).
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence, Union

import numpy as np

from ..fileio import read_json, write_json
from ..errors import ConfigError, DataError
from .anatomy import heart_layers, paint_volume, target_pose
from .rendering import render_slice

GENERATOR_VERSION = 3  # bump when the output changes, so stale phantoms on disk are regenerated
PATIENT_FILE = "phantom.json"
MIN_IMAGE_SIZE = 16
_ANATOMY_STREAM, _TRAJECTORY_STREAM, _SPECKLE_STREAM = 1, 2, 3


class PhantomPatient:
    """Patient ``index`` (1-based: folder ``phantom_{index:02d}``) of the phantom that ``generate_phantom`` writes
    for ``seed``: the same heart, the same target view.

    ``render`` is cheap (a few ms at 224 px on one CPU core): building the patient paints its volume once (~0.5 s).
    """

    def __init__(self, index: int, seed: int = 0, image_size: int = 224):
        if index < 1:
            raise ConfigError(f"phantom patient index is 1-based, got {index}")
        if seed < 0:
            raise ConfigError(f"phantom seed must be >= 0, got {seed}")
        check_image_size(image_size)
        self.index, self.seed, self.image_size = index, seed, image_size
        rng = np.random.default_rng([seed, index, _ANATOMY_STREAM])
        self._volume = paint_volume(heart_layers(rng), rng)  # [1, 1, Z, Y, X]
        self._target = target_pose(rng)  # [4, 4] probe at the target view, heart frame

    def __repr__(self) -> str:
        return f"PhantomPatient(index={self.index}, seed={self.seed}, image_size={self.image_size})"

    def render(
        self, pose: Sequence[float], image_size: Optional[int] = None, rng: Optional[np.random.Generator] = None
    ) -> np.ndarray:
        """The frame at ``pose`` = ``[x, y, z, roll, pitch, yaw]`` (mm, degrees) relative to the target view, the
        label convention of the exports: ``[S, S]`` uint8, ``S = image_size`` (default: ``self.image_size``).

        Speckle is drawn from ``rng`` (a fresh unseeded draw when None), so the same generator state gives the same
        frame and a new state a new one. Poses beyond the written range render too; far out, the anatomy is
        clamped at the border of the volume.
        """
        size = self.image_size if image_size is None else image_size
        check_image_size(size)
        pose = np.asarray(pose, dtype=np.float64)
        if pose.shape != (6,) or not np.isfinite(pose).all():
            raise ConfigError(f"a pose is 6 finite numbers (mm, degrees), got {pose.tolist()}")
        return render_slice(self._volume, self._target, pose, size, rng)

    def frame_rng(self, frame: int) -> np.random.Generator:
        """The speckle generator of frame number ``frame`` in this patient's written folder."""
        return np.random.default_rng([self.seed, self.index, _SPECKLE_STREAM, frame])

    def trajectory_rng(self) -> np.random.Generator:
        """The generator of the poses written in this patient's folder."""
        return np.random.default_rng([self.seed, self.index, _TRAJECTORY_STREAM])

    def write_description(self, folder: Union[str, Path], **details) -> Path:
        """Write ``folder/phantom.json``: what :meth:`from_folder` needs, plus ``details`` for a reader."""
        description = {
            "generator_version": GENERATOR_VERSION,
            "seed": self.seed,
            "patient_index": self.index,
            "image_size": self.image_size,
            **details,
            "frame_rng": "numpy.random.default_rng([seed, patient_index, 3, frame])",
        }
        return write_json(Path(folder) / PATIENT_FILE, description)

    @classmethod
    def from_folder(cls, folder: Union[str, Path]) -> "PhantomPatient":
        """Rebuild the patient written in ``folder`` (its ``phantom.json``); ``render`` defaults to its image size."""
        path = Path(folder) / PATIENT_FILE
        description = read_json(path, "phantom description", DataError)
        version = description.get("generator_version") if isinstance(description, dict) else None
        if version != GENERATOR_VERSION:
            raise DataError(
                f"{path}: written by phantom generator version {version}, this is version {GENERATOR_VERSION}; "
                "generate the phantom again"
            )
        try:
            return cls(int(description["patient_index"]), int(description["seed"]), int(description["image_size"]))
        except (KeyError, TypeError, ValueError, ConfigError) as error:
            raise DataError(f"{path}: unusable phantom description ({error})") from error


def check_image_size(image_size: int) -> None:
    if image_size < MIN_IMAGE_SIZE:
        raise ConfigError(f"phantom image_size must be >= {MIN_IMAGE_SIZE}, got {image_size}")
