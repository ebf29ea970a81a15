"""``PhantomPatient``: one phantom heart that renders a B-mode frame at any 6-DOF probe pose.

Why public: the generator writes datasets with it, and a closed-loop simulator can ask it for the frame a model's
suggested move would show. The patient is a pure function of ``(index, seed, version)``, so a folder's
``phantom.json`` (a few numbers) is enough to rebuild it.

Two versions: ``"v4"`` (the default: patients that differ like people, a beating heart, the look of a real export,
:mod:`.people`) and ``"v3"`` (static hearts that differ by a few %, :mod:`.anatomy`), kept for the tests and
benchmarks calibrated on it.

Random streams, all ``np.random.default_rng`` seeded with a list (a tag keeps the streams apart):

* anatomy and target view: ``[seed, index, 1]``;
* trajectory of the written dataset: ``[seed, index, 2]``;
* speckle of written frame ``frame``: ``[seed, index, 3, frame]`` (:meth:`PhantomPatient.frame_rng`).
"""
from __future__ import annotations

import os
import reprlib
from pathlib import Path
from typing import Optional, Sequence, Tuple, Union

import numpy as np
import torch

from ..io.fileio import read_json, write_json
from ..config import check_choice, is_whole, whole_number
from ..errors import ConfigError, DataError
from ..geometry import MAX_POSE_MAGNITUDE
from . import anatomy, people
from .rendering import render_beating, render_slice

VERSIONS = ("v4", "v3")
DEFAULT_VERSION = "v4"
GENERATOR_VERSIONS = {"v3": 3, "v4": 6}  # written into phantom.json; bump when a version's output changes
GENERATOR_VERSION = GENERATOR_VERSIONS[DEFAULT_VERSION]
PATIENT_FILE = "phantom.json"
MIN_IMAGE_SIZE = 16
MAX_IMAGE_SIZE = 1024  # training's largest input
MAX_SEED = 2**63 - 1  # numpy seeds any non-negative int; past this a number is a typo
MAX_PATIENT_INDEX = 10**9
_ANATOMY_STREAM, _TRAJECTORY_STREAM, _SPECKLE_STREAM = 1, 2, 3


class PhantomPatient:
    """Patient ``index`` (1-based: folder ``phantom_{index:02d}``) of the phantom that ``generate_phantom`` writes
    for ``seed`` and ``version``: the same heart, the same target view.

    ``render`` is cheap (a few ms at 224 px on one CPU core): building the patient paints its volume once (~0.5 s,
    v4 paints three: end-diastole, end-systole and the chest wall). ``alike`` (v4): the average patient's anatomy
    and look with this patient's beat, breath and speckle (:meth:`~.people.Traits.alike`); no export writes it.
    """

    def __init__(self, index: int, seed: int = 0, image_size: int = 224, version: str = DEFAULT_VERSION,
                 alike: bool = False):
        index = whole_number(index, "the phantom's patient index (1-based)", 1, MAX_PATIENT_INDEX)
        seed = whole_number(seed, "the phantom's seed", 0, MAX_SEED)
        check_version(version)
        image_size = check_image_size(image_size)
        if alike and version == "v3":
            raise ConfigError("alike patients are a v4 option: v3's patients differ by a few % only")
        self.index, self.seed, self.image_size, self.version, self.alike = index, seed, image_size, version, alike
        rng = np.random.default_rng([seed, index, _ANATOMY_STREAM])
        if version == "v3":
            self.traits = None
            self._volume = anatomy.paint_volume(anatomy.heart_layers(rng), rng)  # [1, 1, Z, Y, X]
            self._target = anatomy.target_pose(rng)  # [4, 4] probe at the target view, heart frame
        else:
            self.traits = people.Traits.draw(rng)
            if alike:
                self.traits = self.traits.alike()
            self._volume = people.paint_phases(self.traits, rng)  # [2, 1, Z, Y, X]
            self._wall = people.paint_wall(self.traits, rng)  # [2, 1, Z, Y, X]
            self._target = people.target_pose(self.traits)

    def __repr__(self) -> str:
        alike = ", alike=True" if self.alike else ""
        return (f"PhantomPatient(index={self.index}, seed={self.seed}, image_size={self.image_size}, "
                f"version={self.version!r}{alike})")

    def render(
        self, pose: Sequence[float], image_size: Optional[int] = None, rng: Optional[np.random.Generator] = None,
        cycle: Optional[Tuple[float, float]] = None,
    ) -> np.ndarray:
        """The frame at ``pose`` = ``[x, y, z, roll, pitch, yaw]`` (mm, degrees) relative to the target view, the
        label convention of the exports: ``[S, S]`` uint8, ``S = image_size`` (default: ``self.image_size``).

        Speckle is drawn from ``rng``, a ``numpy.random.Generator`` (a fresh unseeded draw when None), so the same
        generator state gives the same frame and a new state a new one. v4 only: ``cycle`` = (cardiac, breathing)
        phase in cycles; None draws both from ``rng`` first (a frame caught at a random moment). v3 renders far
        poses with the anatomy clamped at the border of its volume (beyond 25 mm / 25 degrees); v4's volume holds
        every pose of its sweeps.
        """
        size = check_image_size(self.image_size if image_size is None else image_size)
        pose = _finite_numbers(pose, 6, f"a pose is 6 finite numbers (mm, degrees) within +-{MAX_POSE_MAGNITUDE:g}")
        if rng is not None and not isinstance(rng, np.random.Generator):
            raise ConfigError(f"rng must be a numpy Generator (numpy.random.default_rng(seed)), got {rng!r}")
        rng = np.random.default_rng() if rng is None else rng
        if self.traits is None:
            return render_slice(self._volume, self._target, pose, size, rng)
        cycle = tuple(rng.uniform(0.0, 1.0, 2)) if cycle is None else \
            tuple(_finite_numbers(cycle, 2, "cycle is 2 finite numbers (cardiac, breathing phase in cycles)"))
        return render_beating(self._volume, people.BOX_MM, self._target, self.traits, pose, size, rng, cycle,
                              self._wall, people.WALL_BOX_MM)

    def frame_cycle(self, frame: int) -> Optional[Tuple[float, float]]:
        """(cardiac, breathing) phase of frame number ``frame`` of this patient's sweeps (None for v3: static)."""
        return None if self.traits is None else self.traits.cycle(frame)

    def frame_rng(self, frame: int) -> np.random.Generator:
        """The speckle generator of frame number ``frame`` in this patient's written folder."""
        return np.random.default_rng([self.seed, self.index, _SPECKLE_STREAM, frame])

    def trajectory_rng(self) -> np.random.Generator:
        """The generator of the poses written in this patient's folder."""
        return np.random.default_rng([self.seed, self.index, _TRAJECTORY_STREAM])

    def write_description(self, folder: Union[str, Path], **details) -> Path:
        """Write ``folder/phantom.json``: what :meth:`from_folder` needs, plus ``details`` for a reader."""
        description = {
            "generator_version": GENERATOR_VERSIONS[self.version],
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
        if not isinstance(folder, (str, os.PathLike)):
            raise ConfigError(f"from_folder takes a patient folder's path, got {reprlib.repr(folder)}")
        path = Path(folder) / PATIENT_FILE
        description = read_json(path, "phantom description", DataError)
        number = description.get("generator_version") if isinstance(description, dict) else None
        versions = {value: name for name, value in GENERATOR_VERSIONS.items()}
        if not is_whole(number) or number not in versions:
            known = " or ".join(str(value) for value in sorted(versions))
            raise DataError(f"{path}: written by phantom generator version {number!r}, this one reads version "
                            f"{known}; generate the phantom again")
        missing = [key for key in ("patient_index", "seed", "image_size") if key not in description]
        if missing:
            raise DataError(f"{path}: unusable phantom description (no {', '.join(missing)})")
        try:  # whole numbers only: a seed of 1.7 read as 1 would rebuild another heart than the one written
            return cls(description["patient_index"], description["seed"], description["image_size"], versions[number])
        except ConfigError as error:
            raise DataError(f"{path}: unusable phantom description ({error})") from None


def check_image_size(image_size: int) -> int:
    """``image_size`` as a plain int (a numpy integer would be written into phantom.json as a string)."""
    if not is_whole(image_size) or not MIN_IMAGE_SIZE <= image_size <= MAX_IMAGE_SIZE:
        raise ConfigError(f"phantom image_size must be in {MIN_IMAGE_SIZE}..{MAX_IMAGE_SIZE}, got {image_size!r}")
    return int(image_size)


def _finite_numbers(values, count: int, rule: str) -> np.ndarray:
    """``values`` as ``[count]`` float64 when they are that many finite numbers within +-MAX_POSE_MAGNITUDE (a
    tensor's too, gradient or not); else ConfigError stating ``rule``. Text, booleans and complex numbers are not
    numbers here, though numpy would convert them."""
    if isinstance(values, torch.Tensor):
        values = values.detach().cpu()
    try:
        array = np.asarray(values)
        array = None if array.dtype.kind in "USbc" else array.astype(np.float64)
    except (TypeError, ValueError):
        array = None
    if array is None or array.shape != (count,) or not (np.abs(array) <= MAX_POSE_MAGNITUDE).all():
        raise ConfigError(f"{rule}, got {reprlib.repr(values)}")
    return array


def check_version(version: str) -> None:
    check_choice("phantom version", version, VERSIONS)
