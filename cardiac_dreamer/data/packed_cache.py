"""A one-time packed uint8 image cache on disk, read by the data-loader workers without decoding.

Why: above ``data.cache_budget_mb`` every epoch would decode every PNG again, and decoding (a few ms per 224 px image
on one core) is slower than a GPU consumes images. A pack holds already decoded images as one ``[N, S, S]`` uint8
array after a fixed header; reading an image is a 50 KB read out of the kernel's page cache, which all workers share
instead of each holding a copy. (Reads, not a memory map: a mapped pack shows up in each worker's RSS as it is
read, up to the whole pack per worker, which monitoring reads as a leak.)

Guarantees:

* A pack is valid for exactly one list of image files at one size, and only while every file is the one it decoded:
  the header stores a digest of (path, inode, bytes, mtime_ns, ctime_ns) of every image, and a mismatch rebuilds the
  pack. The change time is set by the system on every write or replacement, so a file swapped for another of the
  same size with its modification time restored (``cp -p``, ``rsync -a``) is caught; a ``chmod`` costs a rebuild.
  Files are stat'ed *before* they are decoded, so a file changed mid-build leaves a digest that no longer matches
  and the next run rebuilds.
* Writes are atomic (temporary file, fsync, rename): a crash never leaves a pack that looks complete.
* Two processes wanting the same pack take turns on a ``flock``: the second finds the first's pack and reuses it.
* Packs live in a cache directory (:func:`default_cache_dir`), never in the data directory. Deleting the directory
  is always safe: packs are rebuilt on demand, and a run whose pack disappears decodes its images instead.
"""
from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import shutil
import struct
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence, Union

try:
    import fcntl
except ImportError:  # Windows: concurrent builders each write a full pack; the last rename wins, both are correct
    fcntl = None

import numpy as np
import torch

from ..errors import DataError, OutputError
from ..io.fileio import atomic_open, os_reason

logger = logging.getLogger(__name__)

PathLike = Union[str, os.PathLike]

CACHE_DIR_VARIABLE = "CARDIAC_DREAMER_CACHE"
FORMAT_VERSION = 2  # raised whenever the pack layout or the decoding rules (data/transforms.py) change
_MAGIC = b"CDPACK\x00\x00"
_HEADER = struct.Struct("<8sIQI32s")  # magic, format version, number of images, image size, stamp digest
HEADER_BYTES = 4096  # the pixels start on a page boundary


def default_cache_dir() -> Path:
    """``$CARDIAC_DREAMER_CACHE``, else ``$XDG_CACHE_HOME/cardiac_dreamer``, else ``~/.cache/cardiac_dreamer``."""
    if os.environ.get(CACHE_DIR_VARIABLE):
        return Path(os.environ[CACHE_DIR_VARIABLE]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "cardiac_dreamer"


class PackedImages:
    """``pack[row] -> uint8 [1, S, S]`` read from a pack file.

    Each read opens the file and reads one image's bytes, from the page cache once the pack has been read: nothing is
    mapped, so a worker's memory does not grow with the images it has served, no file descriptor is held per pack,
    reads from several threads cannot interfere, and pickling for a worker carries only the name.
    """

    def __init__(self, path: Path, num_images: int, image_size: int):
        self.path = Path(path)
        self.num_images = num_images
        self.image_size = image_size

    def __len__(self) -> int:
        return self.num_images

    def __getitem__(self, row: int) -> torch.Tensor:
        size = self.image_size * self.image_size
        with open(self.path, "rb", buffering=0) as stream:
            stream.seek(HEADER_BYTES + row * size)
            pixels = stream.read(size)
        if len(pixels) != size:
            raise DataError(f"{self.path}: image cache file cut short while in use; delete it to rebuild it")
        return torch.frombuffer(bytearray(pixels), dtype=torch.uint8).view(1, self.image_size, self.image_size)


def open_pack(
    paths: Sequence[Path], image_size: int, decode_all: Callable[[], Iterable[np.ndarray]], cache_dir: PathLike
) -> PackedImages:
    """The pack of ``paths`` at ``image_size`` in ``cache_dir``, built first (by ``decode_all``, which yields the
    images ``[S, S]`` uint8 in the order of ``paths``) when it is missing or stale.

    Raises :class:`~cardiac_dreamer.errors.OutputError` when the pack cannot be written (no space, no permission),
    whatever ``decode_all`` raises on a bad image, and ``OSError`` when an image cannot be stat'ed.
    """
    cache_dir = Path(cache_dir)
    path = cache_dir / pack_name(paths, image_size)
    stamp = stamp_digest(paths, image_size)  # before decoding: see the module docstring
    if _is_valid(path, stamp, len(paths), image_size):
        return PackedImages(path, len(paths), image_size)
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise OutputError(f"{cache_dir}: cannot create the image cache directory ({os_reason(error)})") from None
    with _build_lock(path):
        if not _is_valid(path, stamp, len(paths), image_size):  # another process may have built it meanwhile
            logger.info("image cache: decoding %d images of %s into %s (once)", len(paths), paths[0].parent.parent,
                        path.name)
            _write_pack(path, stamp, len(paths), image_size, decode_all())
    return PackedImages(path, len(paths), image_size)


def pack_name(paths: Sequence[Path], image_size: int) -> str:
    """One name per (list of image paths, size): a changed file replaces its pack instead of adding one."""
    digest = hashlib.sha256()
    for path in paths:
        digest.update(os.fsencode(path) + b"\x00")
    return f"images-{digest.hexdigest()[:24]}-{image_size}px.u8"


def stamp_digest(paths: Sequence[Path], image_size: int) -> bytes:
    """SHA-256 of the format, the size, and every image's path, inode, byte count, modification and change times."""
    digest = hashlib.sha256(f"{FORMAT_VERSION}:{image_size}\n".encode())
    for path in paths:
        info = os.stat(path)
        digest.update(os.fsencode(path) + f"\x00{info.st_ino}\x00{info.st_size}\x00{info.st_mtime_ns}"
                      f"\x00{info.st_ctime_ns}\n".encode())
    return digest.digest()


def pack_bytes(num_images: int, image_size: int) -> int:
    """The size of a complete pack file."""
    return HEADER_BYTES + num_images * image_size * image_size


def _is_valid(path: Path, stamp: bytes, num_images: int, image_size: int) -> bool:
    """A complete pack of these images, decoded from files that have not changed since."""
    try:
        with open(path, "rb") as stream:
            header = stream.read(_HEADER.size)
            length = os.fstat(stream.fileno()).st_size
    except OSError:
        return False
    if len(header) < _HEADER.size or length != pack_bytes(num_images, image_size):
        return False
    return _HEADER.unpack(header) == (_MAGIC, FORMAT_VERSION, num_images, image_size, stamp)


def _write_pack(path: Path, stamp: bytes, num_images: int, image_size: int, images: Iterable[np.ndarray]) -> None:
    """Write the whole pack under a temporary name and rename it into place (``atomic_open``). A pack cut short
    by a bug or a crash has the wrong length, which :func:`_is_valid` refuses."""
    needed = pack_bytes(num_images, image_size)
    free = shutil.disk_usage(path.parent).free
    if free < needed:
        raise OutputError(f"{path.parent}: {needed / 2**20:.0f} MB needed for the image cache, {free / 2**20:.0f} MB "
                          "free")
    for stale in path.parent.glob(f".{path.name}.*.tmp"):  # left by a killed builder; we hold the lock
        with contextlib.suppress(OSError):
            stale.unlink()
    header = _HEADER.pack(_MAGIC, FORMAT_VERSION, num_images, image_size, stamp).ljust(HEADER_BYTES, b"\x00")
    with atomic_open(path, "wb") as stream:
        stream.write(header)
        for image in images:
            stream.write(image.tobytes())


@contextlib.contextmanager
def _build_lock(path: Path) -> Iterator[None]:
    """Exclusive while one process builds ``path``; the kernel drops the lock of a killed process."""
    if fcntl is None:
        yield
        return
    lock_path = path.with_name(path.name + ".lock")
    try:
        handle = open(lock_path, "a+")
    except OSError as error:
        raise OutputError(f"{lock_path}: cannot open the image cache lock ({os_reason(error)})") from None
    with handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            logger.info("image cache: waiting for another process building %s", path.name)
            fcntl.flock(handle, fcntl.LOCK_EX)
        except OSError:
            pass  # a file system without locks: concurrent builders each write a whole pack, the last rename wins
        yield
