"""TransitionsDataset: validated records -> tensors, each image decoded once.

Decoding and resizing a PNG costs far more than a training step's share of the GPU, and the same image often
appears in several pairs, so when the decoded images fit a memory budget they are decoded once, at construction,
into one uint8 tensor ``[N, 1, H, W]`` (a 224x224 image is 49 KB). Decoding errors therefore surface before
training starts. Above the budget, images are decoded lazily in the loader workers.
"""
from __future__ import annotations

import logging
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence, Union

import numpy as np
import torch
from torch.utils.data import Dataset

from ..errors import DataError
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
    """

    def __init__(
        self,
        records: Sequence[TransitionRecord],
        image_size: int = 224,
        cache_images: bool = True,
        cache_budget_mb: float = 2048,
        normalize_images: bool = True,
        labelled_patients: Optional[Iterable[str]] = None,
    ):
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
        if cache_images and size_mb <= cache_budget_mb:
            self._cache = self._decode_all()
            logger.info("image cache: %d decoded images in memory (%.1f MB)", len(self._paths), size_mb)
        else:
            reason = "disabled" if not cache_images else f"{size_mb:.1f} MB > budget {cache_budget_mb} MB"
            logger.info("image cache off (%s): %d images decoded on demand", reason, len(self._paths))
        self.cache_mb = size_mb if self._cache is not None else 0.0

    @property
    def images_in_memory(self) -> bool:
        """Whether every image was decoded (and so checked) at construction."""
        return self._cache is not None

    @property
    def num_images(self) -> int:
        """Distinct image files behind the pairs."""
        return len(self._paths)

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
        return torch.from_numpy(self._decode(slot)).unsqueeze(0)  # [H, W] -> [1, H, W]

    def _decode(self, slot: int) -> np.ndarray:
        try:
            return read_grayscale(self._paths[slot], self.image_size)
        except DataError as error:
            raise DataError(f"{self._owners[slot].where()}: {error}") from None

    def _decode_all(self) -> torch.Tensor:
        size = self.image_size
        cache = torch.empty((len(self._paths), 1, size, size), dtype=torch.uint8)
        # PIL releases the GIL while decoding, so threads decode in parallel.
        pool = ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1))
        try:
            for slot, image in enumerate(pool.map(self._decode, range(len(self._paths)))):
                cache[slot, 0] = torch.from_numpy(image)
        finally:
            pool.shutdown(cancel_futures=True)  # a decoding error stops the remaining work
        return cache


def _vectors(vectors: Sequence[Sequence[float]]) -> torch.Tensor:
    """``[N, 6]`` float32 in mm and degrees."""
    return torch.tensor(vectors, dtype=torch.float32).reshape(-1, 6)
