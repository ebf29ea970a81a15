"""Atomic file writes: a reader (or a resumed run after a crash) sees the old file or the new one, never half.

The file is written to a temporary name in the same directory, flushed and fsync'ed, then renamed over the target
with ``os.replace`` (atomic on POSIX and Windows); on any error the temporary file is removed and the old file is
left untouched. A process killed mid-write (SIGKILL, power loss) cannot clean up: it leaves a ``.<name>.*.tmp``
file beside the target, which :func:`remove_stale_temporaries` deletes when the run resumes.
"""
from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import IO, Any, Iterator, List, Optional, Union

PathLike = Union[str, os.PathLike]


@contextlib.contextmanager
def atomic_open(path: PathLike, mode: str = "wb", newline: Optional[str] = None) -> Iterator[IO]:
    """Open a temporary file beside ``path``; on a clean exit it replaces ``path`` atomically.

    Text modes write UTF-8; ``newline`` is :func:`open`'s (``""`` for the csv module).
    """
    path = Path(path)
    handle, temp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.chmod(temp_name, _plain_file_mode())  # mkstemp makes 0600; colleagues on a shared machine may read
        with os.fdopen(handle, mode, **({} if "b" in mode else {"encoding": "utf-8", "newline": newline})) as stream:
            yield stream
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temp_name, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp_name)
        raise
    _fsync_directory(path.parent)


def write_json(path: PathLike, data: Any) -> Path:
    """Write ``data`` as indented JSON, atomically."""
    with atomic_open(path, "w") as stream:
        json.dump(data, stream, indent=2, sort_keys=False, default=str)
        stream.write("\n")
    return Path(path)


def link_or_copy(source: PathLike, target: PathLike) -> None:
    """Make ``target`` the same file as ``source`` (a hard link, so no extra disk), replacing it atomically.

    Falls back to a copy on file systems without hard links.
    """
    source, target = Path(source), Path(target)
    if target.exists() and os.path.samefile(source, target):
        return
    temp_name = target.with_name(f".{target.name}.link.tmp")
    with contextlib.suppress(FileNotFoundError):
        os.unlink(temp_name)
    try:
        os.link(source, temp_name)
    except OSError:
        with open(source, "rb") as reader, atomic_open(target, "wb") as writer:
            while chunk := reader.read(1 << 20):
                writer.write(chunk)
        return
    os.replace(temp_name, target)
    _fsync_directory(target.parent)


def remove_stale_temporaries(directory: PathLike) -> List[Path]:
    """Delete the ``.<name>.*.tmp`` files that writes killed mid-way left in ``directory``; returns them.

    Only safe while nothing else writes into ``directory`` (a run being resumed owns its run directory).
    """
    removed = []
    for path in Path(directory).glob(".*.tmp"):
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
            removed.append(path)
    return removed


def _plain_file_mode() -> int:
    """The permissions ``open(path, "w")`` would give a new file: 0666 less the process umask."""
    umask = os.umask(0o022)  # reading the umask means setting it; put it straight back
    os.umask(umask)
    return 0o666 & ~umask


def _fsync_directory(directory: Path) -> None:
    """Persist the rename itself (POSIX); a no-op where directories cannot be opened."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
