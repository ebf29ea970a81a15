"""File reading and writing: atomic writes, and JSON read back with one typed, one-line error.

Atomic writes: a reader (or a resumed run after a crash) sees the old file or the new one, never half.

The file is written to a temporary name in the same directory, flushed and fsync'ed, then renamed over the target
with ``os.replace`` (atomic on POSIX and Windows); on any error the temporary file is removed and the old file is
left untouched. A process killed mid-write (SIGKILL, power loss) cannot clean up: it leaves a ``.<name>.*.tmp``
file beside the target, which :func:`remove_stale_temporaries` deletes when the run resumes.
"""
from __future__ import annotations

import contextlib
import json
import math
import os
import stat
import tempfile
import unicodedata
from pathlib import Path
from typing import IO, Any, Dict, Iterator, List, Optional, Tuple, Type, Union

from ..errors import CardiacDreamerError, OutputError

PathLike = Union[str, os.PathLike]


@contextlib.contextmanager
def atomic_open(path: PathLike, mode: str = "wb", newline: Optional[str] = None) -> Iterator[IO]:
    """Open a temporary file beside ``path``; on a clean exit it replaces ``path`` atomically.

    Text modes write UTF-8; ``newline`` is :func:`open`'s (``""`` for the csv module). Any OS-level failure (a full
    disk, a vanished directory, no permission) becomes one :class:`OutputError` line; the old file stays intact.
    """
    path = Path(path)
    try:
        handle, temp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as problem:
        raise OutputError(cannot_write(path, problem)) from None
    try:
        os.chmod(temp_name, _plain_file_mode())  # mkstemp makes 0600; colleagues on a shared machine may read
        with os.fdopen(handle, mode, **({} if "b" in mode else {"encoding": "utf-8", "newline": newline})) as stream:
            yield stream
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temp_name, path)
    except OSError as problem:
        _discard(temp_name)
        raise OutputError(cannot_write(path, problem)) from None
    except BaseException:
        _discard(temp_name)
        raise
    _fsync_directory(path.parent)


def cannot_write(path: Path, problem: BaseException) -> str:
    """The one-line message for a failed write, with the OS's reason (``No space left on device``)."""
    reason = " ".join(os_reason(problem).split()) or type(problem).__name__
    return f"{path}: cannot write ({reason}); the previous version of this file, if any, is intact"


def _discard(temp_name: str) -> None:
    with contextlib.suppress(OSError):
        os.unlink(temp_name)


def write_json(path: PathLike, data: Any) -> Path:
    """Write ``data`` as indented JSON, atomically; NaN and infinities become null (JSON has no spelling for them
    and readers choke on ``NaN``)."""
    with atomic_open(path, "w") as stream:
        json.dump(json_safe(data), stream, indent=2, sort_keys=False, default=str, allow_nan=False)
        stream.write("\n")
    return Path(path)


def json_safe(value: Any) -> Any:
    """``value`` with every non-finite float replaced by None, through dicts, lists and tuples."""
    if isinstance(value, dict):
        return {key: json_safe(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(item) for item in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def read_json(path: PathLike, what: str, error: Type[CardiacDreamerError]) -> Any:
    """The parsed content of the JSON file ``path``; ``error`` (one line naming it and ``what`` it should be) when
    it is missing, not a regular file (a directory, or a pipe that would block the read), unreadable, not UTF-8, or
    not JSON (pathological nesting and integers too long to convert included), or when an object names a key twice
    (JSON parsers disagree on which one counts)."""
    path = Path(path)
    require_regular_file(path, what, error)
    try:
        text = path.read_text(encoding="utf-8-sig")  # files written on Windows may carry a BOM
    except (OSError, UnicodeDecodeError) as problem:
        raise error(f"{path}: cannot read {what} ({problem})") from None
    try:
        return json.loads(text, object_pairs_hook=_unique_keys)
    except _DuplicateKey as duplicate:
        raise error(f"{path}: invalid {what}: the key {duplicate} appears twice in one object") from None
    except json.JSONDecodeError as problem:
        raise error(f"{path}: invalid JSON at line {problem.lineno} column {problem.colno}: {problem.msg}") from None
    except RecursionError:
        raise error(f"{path}: invalid JSON: nested too deeply") from None
    except ValueError as problem:  # e.g. an integer of more digits than Python converts
        raise error(f"{path}: invalid JSON: {problem}") from None


class _DuplicateKey(Exception):
    """A JSON object naming one key twice; the message is the key."""


def _unique_keys(pairs: List[Tuple[str, Any]]) -> Dict[str, Any]:
    keys = [key for key, _ in pairs]
    if len(set(keys)) < len(keys):
        raise _DuplicateKey(repr(next(key for key in keys if keys.count(key) > 1))[:80])
    return dict(pairs)


def stat_path(path: Path, what: str, error: Type[CardiacDreamerError]) -> os.stat_result:
    """``path``'s status; ``error`` naming ``what`` it should be when it is missing or cannot be inspected (no
    permission, a symlink loop, a name the OS refuses)."""
    try:
        return path.stat()
    except FileNotFoundError:
        raise error(f"{path}: {what} not found") from None
    except (OSError, ValueError) as problem:
        raise error(f"{path}: cannot read {what} ({os_reason(problem)})") from None


def require_regular_file(path: Path, what: str, error: Type[CardiacDreamerError]) -> None:
    """``error`` naming ``what`` ``path`` should be when it is missing or not a regular file: a directory, or a
    pipe or device whose read would block or never end."""
    info = stat_path(path, what, error)
    if not stat.S_ISREG(info.st_mode):
        kind = "a directory" if stat.S_ISDIR(info.st_mode) else "a special file (pipe, socket or device)"
        raise error(f"{path}: {what} is {kind}, not a regular file")


def is_text_path(value: Any) -> bool:
    """Whether ``value`` can name a file: a str or path-like of str without a NUL byte (bytes, None and numbers are
    not; an empty string is, and each caller says why it refuses one)."""
    if not isinstance(value, (str, os.PathLike)):
        return False
    text = os.fspath(value)
    return isinstance(text, str) and "\0" not in text


def text_problem(text: str) -> Optional[str]:
    """What makes ``text`` unfit to name a file in a one-line message, a report or a JSON file, None when nothing
    does: a NUL character (it ends a path for the operating system), bytes that were not UTF-8 (Python holds them
    as unpaired surrogates, which no JSON file, plot or TensorBoard event can hold) or a control character (a line
    break splits the one-line message that names it)."""
    if "\0" in text:
        return "contains a NUL character"
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return "is not valid UTF-8 text"
    if any(unicodedata.category(character) == "Cc" for character in text):
        return "contains a control character (a line break or tab: one line per message could not hold it)"
    return None


def os_reason(problem: BaseException) -> str:
    """The operating system's words for an error (``File name too long``), without repeating the path."""
    return getattr(problem, "strerror", None) or str(problem)


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
