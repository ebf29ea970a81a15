"""TransitionsDataset: validated records -> tensors, each image decoded once.

Decoding and resizing a PNG costs far more than a training step's share of the GPU, and the same image often
appears in several pairs, so when the decoded images fit a memory budget they are decoded once, at construction,
into one uint8 tensor ``[N, 1, H, W]`` (a 224x224 image is 49 KB). Decoding errors therefore surface before
training starts. Above the budget (the field's data sets: 150k pairs are ~100k images, ~5 GB at 224 px) they are
decoded once into packs on disk, one per patient folder, that the loader workers read without decoding
(:mod:`~cardiac_dreamer.data.packed_cache`): later runs, splits and cross-validation folds reuse them. Where no pack
can be written, or with ``disk_cache="off"``, images are decoded lazily in the loader workers.
"""
from __future__ import annotations

import logging
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Dict, Iterable, Iterator, List, Optional, Sequence, Set, Union

import numpy as np
import torch
from torch.utils.data import Dataset

from ..config import DISK_CACHE_MODES, check_choice
from ..errors import DataError, OutputError
from ..io.fileio import os_reason
from ..io.run_dir import ensure_outside
from ..runtime.threads import usable_cpus
from .packed_cache import PackedImages, PathLike, default_cache_dir, open_pack
from .records import TransitionRecord
from .transforms import images_to_float, read_grayscale

logger = logging.getLogger(__name__)

Item = Dict[str, Union[torch.Tensor, str, int]]


class TransitionsDataset(Dataset):
    """Items ``{"image_t1", "image_t2": [1, H, W], "action_change", "at1", "at2": float32 [6] in mm and degrees,
    "labelled": bool, "patient_id": str, "entry_index": int, "index": int}``.

    Labels stay in physical units: the model standardizes with its own statistics, the one copy there is.
    ``labelled_patients`` (label-scarce runs) marks the pairs of other patients ``labelled=False``: their images and
    move still train the world model, their pose labels are never used.

    Images are float32 normalized by :func:`images_to_float` when ``normalize_images`` (convenient in a
    notebook), or uint8 when not: the trainer moves the compact uint8 batch to the device and converts it there.
    ``entry_index`` is the entry's position in its patient's JSON file; ``index`` is the item's position in this
    dataset, so ``dataset.records[index]`` is its source record.

    Where the images are kept (:attr:`image_store`): in memory when ``cache_images`` and they fit
    ``cache_budget_mb``; else, with ``disk_cache="auto"``, in packs under ``disk_cache_dir`` (default
    :func:`~cardiac_dreamer.data.packed_cache.default_cache_dir`, never inside the data directory); else nowhere,
    decoded at every read. All three serve identical tensors.
    """

    def __init__(
        self,
        records: Sequence[TransitionRecord],
        image_size: int = 224,
        cache_images: bool = True,
        cache_budget_mb: float = 2048,
        normalize_images: bool = True,
        labelled_patients: Optional[Iterable[str]] = None,
        disk_cache: str = "auto",
        disk_cache_dir: Optional[PathLike] = None,
    ):
        check_choice("TransitionsDataset's disk_cache", disk_cache, DISK_CACHE_MODES)
        self.records: List[TransitionRecord] = list(records)
        if not self.records:
            raise DataError("TransitionsDataset: no records to load")
        self.image_size = image_size
        self.normalize_images = normalize_images

        # The t2 image of one pair is often the t1 image of the next: index unique paths, not pairs.
        slot_of: Dict[Path, int] = {}
        self._paths: List[Path] = []
        self._owners: List[TransitionRecord] = []  # the first record naming each image, for error messages
        pairs = []
        for record in self.records:
            for path in (record.image_t1, record.image_t2):
                if path not in slot_of:
                    slot_of[path] = len(self._paths)
                    self._paths.append(path)
                    self._owners.append(record)
            pairs.append((slot_of[record.image_t1], slot_of[record.image_t2]))
        self._pairs = torch.tensor(pairs, dtype=torch.long)  # [N, 2] image slots

        self._at1 = _vectors([r.at1 for r in self.records])  # [N, 6]
        self._at2 = _vectors([r.at2 for r in self.records])
        self._move = _vectors([r.action_change for r in self.records])
        labelled = None if labelled_patients is None else set(labelled_patients)
        self._labelled = torch.tensor([labelled is None or r.patient_id in labelled for r in self.records])

        size_mb = len(self._paths) * image_size * image_size / 2**20
        self._cache: Optional[torch.Tensor] = None  # [num_images, 1, H, W] uint8
        self._packs: List[PackedImages] = []
        self._pack_rows: Optional[torch.Tensor] = None  # [num_images, 2]: (pack, row) of each image slot
        if cache_images and size_mb <= cache_budget_mb:
            self._cache = self._decode_all()
            logger.info("image cache: %d decoded images in memory (%.1f MB)", len(self._paths), size_mb)
        elif cache_images and disk_cache == "auto":
            self._open_packs(Path(disk_cache_dir) if disk_cache_dir is not None else default_cache_dir(), size_mb)
        if self._cache is None and not self._packs:
            reason = ("disabled" if not cache_images else "no disk cache" if disk_cache == "off"
                      else "no disk cache could be written")
            logger.info("image cache off (%s): %d images decoded on demand", reason, len(self._paths))
        self.cache_mb = size_mb if self._cache is not None else 0.0  # memory held; packs live in the page cache

    @property
    def num_images(self) -> int:
        """Distinct image files behind the pairs."""
        return len(self._paths)

    @property
    def image_store(self) -> str:
        """``"memory"``, ``"disk"`` (packs of decoded images on disk) or ``"decode"`` (every read decodes the file)."""
        return "memory" if self._cache is not None else "disk" if self._packs else "decode"

    @property
    def images_checked(self) -> bool:
        """Whether every image has been decoded under the training rules: at construction into memory, or when its
        disk pack was built (a pack is rebuilt when any file changes)."""
        return self.image_store != "decode"

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> Item:
        record = self.records[index]
        slot_t1, slot_t2 = self._pairs[index].tolist()
        image_t1, image_t2 = self._image(slot_t1), self._image(slot_t2)  # uint8 [1, H, W]
        if self.normalize_images:
            image_t1, image_t2 = images_to_float(image_t1), images_to_float(image_t2)
        # Copies, not views: a view sent to another process would carry the whole cache along.
        return {
            "image_t1": image_t1,
            "image_t2": image_t2,
            "action_change": self._move[index].clone(),
            "at1": self._at1[index].clone(),
            "at2": self._at2[index].clone(),
            "labelled": self._labelled[index].clone(),
            "patient_id": record.patient_id,
            "entry_index": record.index,  # position in the patient's transitions_dataset.json
            "index": int(index),  # position in this dataset: dataset.records[index] is the record
        }

    def _image(self, slot: int) -> torch.Tensor:
        if self._cache is not None:
            return self._cache[slot].clone()
        if self._packs:
            pack, row = self._pack_rows[slot].tolist()
            try:
                return self._packs[pack][row]
            except OSError as error:  # the cache deleted while in use: this process decodes from now on
                logger.warning("image cache: %s unreadable (%s); decoding the images instead", error.filename,
                               os_reason(error))
                self._packs = []
        return torch.from_numpy(self._decode(slot)).unsqueeze(0)  # [H, W] -> [1, H, W]

    def _decode(self, slot: int) -> np.ndarray:
        try:
            return read_grayscale(self._paths[slot], self.image_size)
        except DataError as error:
            raise DataError(f"{self._owners[slot].where()}: {error}") from None

    def _decoded(self, slots: Sequence[int]) -> Iterator[np.ndarray]:
        """The images of ``slots`` in order, ``[H, W]`` uint8 each, decoded by a pool of threads (PIL releases the
        GIL while decoding) a chunk at a time, so memory stays bounded however many there are."""
        pool = ThreadPoolExecutor(max_workers=min(8, usable_cpus()))
        try:
            for start in range(0, len(slots), _DECODE_CHUNK):
                yield from pool.map(self._decode, slots[start:start + _DECODE_CHUNK])
        finally:
            pool.shutdown(cancel_futures=True)  # a decoding error stops the remaining work

    def _decode_all(self) -> torch.Tensor:
        size = self.image_size
        cache = torch.empty((len(self._paths), 1, size, size), dtype=torch.uint8)
        for slot, image in enumerate(self._decoded(range(len(self._paths)))):
            cache[slot, 0] = torch.from_numpy(image)
        return cache

    def _open_packs(self, cache_dir: Path, size_mb: float) -> None:
        """Open (building once where needed) one pack per patient folder; on an unwritable or full cache directory,
        log why and leave the images to be decoded on demand."""
        for root in _data_roots(self._owners, self._paths):
            ensure_outside(cache_dir, root, "image cache")
        by_folder: Dict[str, List[int]] = {}
        for slot, owner in enumerate(self._owners):
            by_folder.setdefault(owner.folder, []).append(slot)
        pack_rows = torch.empty((len(self._paths), 2), dtype=torch.long)
        packs = []
        started = time.perf_counter()
        try:
            for number, slots in enumerate(by_folder.values()):
                paths = [self._paths[slot] for slot in slots]
                packs.append(open_pack(paths, self.image_size, lambda slots=slots: self._decoded(slots), cache_dir))
                pack_rows[slots, 0] = number
                pack_rows[slots, 1] = torch.arange(len(slots))
        except OutputError as error:
            logger.warning("image cache on disk unavailable, decoding images on demand: %s", error)
            return
        except OSError as error:  # an image that cannot be stat'ed (errors writing the cache are OutputErrors)
            problem = "image not found" if isinstance(error, FileNotFoundError) else f"cannot read image ({error})"
            owner = self._owners[self._paths.index(Path(error.filename))]
            raise DataError(f"{owner.where()}: {error.filename}: {problem}") from None
        self._packs, self._pack_rows = packs, pack_rows
        logger.info("image cache: %d images in %d packs on disk in %s (%.1f MB, ready in %.1f s)",
                    len(self._paths), len(packs), cache_dir, size_mb, time.perf_counter() - started)


_DECODE_CHUNK = 256  # images decoded ahead of the consumer


def _data_roots(owners: Sequence[TransitionRecord], paths: Sequence[Path]) -> Set[Path]:
    """The data directories the images come from: the parent of each transitions file's patient folder (the image's
    own folder for records built without one)."""
    return {owner.source.parent.parent if owner.source is not None else path.parent
            for owner, path in zip(owners, paths)}


def _vectors(vectors: Sequence[Sequence[float]]) -> torch.Tensor:
    """``[N, 6]`` float32 in mm and degrees."""
    return torch.tensor(vectors, dtype=torch.float32).reshape(-1, 6)
