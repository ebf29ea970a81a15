"""Check every image of a data set before anything is written.

Above ``data.cache_budget_mb`` the dataset decodes images lazily, so without this pass a corrupt file would be
found mid-epoch, after the run directory exists, and inside a loader worker whose traceback buries the message.
Each distinct file is opened, its size checked from the header, fully decoded and converted exactly as
:func:`~cardiac_dreamer.data.read_grayscale` does for training (PIL's ``verify()`` alone misses truncated pixel
data), on a pool of threads: PIL releases the GIL while decoding.
"""
from __future__ import annotations

import logging
import os
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterable, Iterator, List, NamedTuple, Optional, Sequence, Tuple

from ..errors import DataError
from .records import TransitionRecord
from .transforms import dim_sixteen_bit, image_to_gray, open_image

logger = logging.getLogger(__name__)

_CHUNK = 512  # images handed to the pool at a time: a bounded queue, and a prompt stop at the first problem
_PROGRESS_EVERY_S = 30.0


@dataclass
class ImageScan:
    """What a pass over the distinct image files of some records found."""

    sizes: Counter = field(default_factory=Counter)  # (width, height) -> number of usable files
    modes: Counter = field(default_factory=Counter)  # PIL mode -> number of usable files
    dim: int = 0  # usable 16-bit files holding values of 12 bits at most: nearly black once scaled (see doctor)
    first_dim: str = ""  # the first of them, so the user can look at one
    problems: List[str] = field(default_factory=list)  # one line each: "<json>: entry <i>: <image>: <problem>"
    seconds: float = 0.0

    @property
    def num_images(self) -> int:
        """Files checked, usable or not."""
        return sum(self.sizes.values()) + len(self.problems)


class _Outcome(NamedTuple):
    size: Optional[Tuple[int, int]]
    mode: Optional[str]
    problem: Optional[str]
    dim_path: str = ""  # the file, when it is a 16-bit one holding 12-bit values


def verify_images(
    records: Sequence[TransitionRecord], image_size: int, workers: Optional[int] = None
) -> ImageScan:
    """Decode every distinct image of ``records`` as training will; stop at the first unusable one with a
    :class:`DataError` naming the transitions file, the entry, the image and the problem.

    Call it before anything is written (a run directory, a checkpoint). ``workers`` threads decode in parallel
    (default: the CPU count, at most 8).
    """
    scan, started = ImageScan(), time.monotonic()
    with closing(_checked(records, image_size, workers)) as outcomes:  # closing cancels what is left
        for record, outcome in outcomes:
            if outcome.problem is not None:
                raise DataError(f"{record.where()}: {outcome.problem}")
            _count(scan, outcome)
    return _finished(scan, started)


def verify_undecoded_images(datasets: Iterable[Any], image_size: int) -> Optional[ImageScan]:
    """:func:`verify_images` on the records of the datasets whose images were not decoded already (into memory or
    into disk packs, which checks every image); None when there is nothing left to check."""
    lazy = [record for dataset in datasets if not dataset.images_checked for record in dataset.records]
    return verify_images(lazy, image_size) if lazy else None


def scan_images(
    records: Sequence[TransitionRecord], image_size: int, workers: Optional[int] = None
) -> ImageScan:
    """Like :func:`verify_images`, but every image is checked and every problem collected in
    :attr:`ImageScan.problems` (for a report that lists what to fix in one pass)."""
    scan, started = ImageScan(), time.monotonic()
    for record, outcome in _checked(records, image_size, workers):
        if outcome.problem is not None:
            scan.problems.append(f"{record.where()}: {outcome.problem}")
        else:
            _count(scan, outcome)
    return _finished(scan, started)


def _checked(
    records: Sequence[TransitionRecord], image_size: int, workers: Optional[int]
) -> Iterator[Tuple[TransitionRecord, _Outcome]]:
    """``(first record naming the image, outcome)`` for every distinct image, in record order. Closing the
    iterator early (at a problem) cancels the images not yet started."""
    owners = _first_owners(records)
    paths = list(owners)
    started = last_log = time.monotonic()
    pool = ThreadPoolExecutor(max_workers=workers or min(8, os.cpu_count() or 1))
    try:
        for start in range(0, len(paths), _CHUNK):
            chunk = paths[start : start + _CHUNK]
            for path, outcome in zip(chunk, pool.map(lambda p: _check_image(p, image_size), chunk)):
                yield owners[path], outcome
            if time.monotonic() - last_log > _PROGRESS_EVERY_S:
                last_log = time.monotonic()
                logger.info("images: %d of %d checked (%.0f s)", start + len(chunk), len(paths), last_log - started)
    finally:
        pool.shutdown(cancel_futures=True)


def _check_image(path: Path, image_size: int) -> _Outcome:
    try:
        with open_image(path) as image:
            image_to_gray(image, image_size, source=str(path))
            return _Outcome(image.size, image.mode, None, str(path) if dim_sixteen_bit(image) else "")
    except DataError as error:
        return _Outcome(None, None, str(error))


def _first_owners(records: Sequence[TransitionRecord]) -> Dict[Path, TransitionRecord]:
    """Each distinct image -> the first record naming it (the t2 image of a pair is often the next t1)."""
    owners: Dict[Path, TransitionRecord] = {}
    for record in records:
        owners.setdefault(record.image_t1, record)
        owners.setdefault(record.image_t2, record)
    return owners


def _count(scan: ImageScan, outcome: _Outcome) -> None:
    scan.sizes[outcome.size] += 1
    scan.modes[outcome.mode] += 1
    if outcome.dim_path:
        scan.dim += 1
        scan.first_dim = scan.first_dim or outcome.dim_path


def _finished(scan: ImageScan, started: float) -> ImageScan:
    scan.seconds = time.monotonic() - started
    logger.info("images: %d checked in %.1f s", scan.num_images, scan.seconds)
    return scan
