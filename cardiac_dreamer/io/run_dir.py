"""The run directory's layout and the JSON records written into it, shared by training and evaluation.

``OUTPUT_DIR/run_YYYYMMDD_HHMMSS/`` with ``checkpoints/``, ``logs/`` and ``plots/``; two runs started in the same
second get distinct directories (``os.mkdir`` either creates or fails, so there is no race). ``OUTPUT_DIR/latest``
names the newest run: a relative symlink, or a one-line text file where the file system has no symlinks.
"""
from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Collection, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple, Union

try:
    import fcntl
except ImportError:  # Windows: runs are not locked there
    fcntl = None

from ..errors import CheckpointError, ConfigError, OutputError
from .fileio import atomic_open, cannot_write, is_text_path, read_json, require_regular_file, write_json
from ..names import AVERAGED_CHECKPOINT, BEST_CHECKPOINT, FINAL_MODEL, LAST_CHECKPOINT, RECORD_TIME, \
    TEST_EVALUATION, TRANSITIONS_FILE

log = logging.getLogger(__name__)

LOCK_FILE = ".lock"
RUN_NAME = re.compile(r"[A-Za-z_]+_\d{8}_\d{6}(_\d+)?")  # what timestamped_directory names a run
MAX_POINTER_BYTES = 256
LATEST = "latest"  # in the output directory: the newest run
EXPERIMENT_CONFIG = "experiment_config.json"
CHECKPOINTS = "checkpoints"


@dataclass(frozen=True)
class RunDirectory:
    root: Path

    @property
    def checkpoints(self) -> Path:
        return self.root / CHECKPOINTS

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def plots(self) -> Path:
        return self.root / "plots"

    @property
    def last_checkpoint(self) -> Path:
        return self.checkpoints / LAST_CHECKPOINT

    @property
    def best_checkpoint(self) -> Path:
        return self.checkpoints / BEST_CHECKPOINT

    @property
    def averaged_checkpoint(self) -> Path:
        return self.checkpoints / AVERAGED_CHECKPOINT

    @property
    def deployed_checkpoint(self) -> Path:
        """The model the run recommends: ``averaged.ckpt`` when the run wrote one, else ``best.ckpt``."""
        return self.averaged_checkpoint if self.averaged_checkpoint.is_file() else self.best_checkpoint

    @property
    def final_model(self) -> Path:
        return self.root / FINAL_MODEL

    @property
    def tensorboard(self) -> Path:
        return self.logs / "cardiac_dreamer"

    @property
    def tensorboard_steps(self) -> Path:
        """Where the per-optimizer-step scalars go (runs before it wrote them beside the epochs')."""
        return self.tensorboard / "steps"

    @property
    def metrics_csv(self) -> Path:
        return self.logs / "cardiac_dreamer_csv" / "metrics.csv"

    @property
    def experiment_config(self) -> Path:
        return self.root / EXPERIMENT_CONFIG

    @property
    def dataset_stats(self) -> Path:
        return self.root / "dataset_stats.json"

    @classmethod
    def create(cls, output_dir: Path) -> "RunDirectory":
        """A new ``run_YYYYMMDD_HHMMSS`` run directory with its sub-directories."""
        run = cls(timestamped_directory(output_dir, "run"))
        run.make_subdirectories()
        return run

    @classmethod
    def of_checkpoint(cls, checkpoint: Path) -> "RunDirectory":
        """The run a checkpoint belongs to (``run/checkpoints/x.ckpt`` or ``run/final_model.ckpt``)."""
        checkpoint = Path(checkpoint).resolve()
        parent = checkpoint.parent
        return cls(parent.parent if parent.name == CHECKPOINTS else parent)

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """Hold the run for this process: a second process (another resume of the same run) is refused instead of
        writing into it alongside. The lock is the kernel's (``flock``), so a killed process never leaves it held
        (its ``.lock`` file stays, unlocked, and the next run takes it); any other ending removes the file."""
        if fcntl is None:
            yield
            return
        handle = self._acquire_lock()
        try:
            yield
        finally:
            with contextlib.suppress(OSError):  # removed while still held, so nobody locks a file on its way out
                os.unlink(self.root / LOCK_FILE)
            handle.close()

    def _acquire_lock(self) -> IO:
        """The open, locked ``.lock`` file. A file another process unlinked between our open and our lock is not
        the run's lock any more: open the current one again."""
        path = self.root / LOCK_FILE
        while True:
            try:
                handle = open(path, "a+")
            except OSError as error:
                raise OutputError(cannot_write(path, error)) from None
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                handle.close()
                raise ConfigError(f"{self.root}: the run is in use by another process (another training or resume "
                                  "of it is running); wait for it to end") from None
            except OSError:
                return handle  # a file system without locks: run unguarded rather than not at all
            if _same_file(handle, path):
                return handle
            handle.close()

    def make_subdirectories(self) -> None:
        for directory in self._subdirectories():
            directory.mkdir(parents=True, exist_ok=True)

    def ensure_resumable(self) -> None:
        """Check that a resumed run can write wherever it will (its folders, and metrics.csv, which it appends to)
        before it rewrites anything: found at the first epoch's end, a read-only log folder stopped the run after
        its config, statistics and links were rewritten. ``os.access`` asks without writing (a probe file would
        change the folders' times), and answers for permissions and read-only mounts alike."""
        for directory in (self.root, *self._subdirectories(), self.tensorboard_steps, self.root / TEST_EVALUATION):
            if os.path.lexists(directory) and not (directory.is_dir() and os.access(directory, os.W_OK | os.X_OK)):
                raise OutputError(f"{directory}: not a writable folder; the run cannot be resumed until it is")
        csv = self.metrics_csv
        if os.path.lexists(csv) and not (csv.is_file() and os.access(csv, os.W_OK)):
            raise OutputError(f"{csv}: not a writable file; the run cannot be resumed until it is")

    def changed_pair_counts(self, samples_per_patient: Mapping[str, int],
                            patients: Optional[Collection[str]] = None) -> List[Tuple[str, int, int]]:
        """``(patient, pairs recorded, pairs now)`` for each patient (of ``patients``, or all) whose number of pairs
        differs from what ``dataset_stats.json`` recorded when the run last started; [] when it holds none (a run
        stopped before writing it, or an unreadable file, which is logged)."""
        if not self.dataset_stats.is_file():
            return []
        try:
            stats = read_json(self.dataset_stats, "dataset statistics", OutputError)
        except OutputError as error:
            log.warning("%s; the pairs per patient are not compared with the run's", error)
            return []
        splits = stats.get("splits") if isinstance(stats, dict) else None
        changed = []
        for split in splits.values() if isinstance(splits, dict) else ():
            counts = split.get("samples_per_patient") if isinstance(split, dict) else None
            for patient, recorded in counts.items() if isinstance(counts, dict) else ():
                now = samples_per_patient.get(patient, 0)
                if isinstance(recorded, int) and recorded != now and (patients is None or patient in patients):
                    changed.append((patient, recorded, now))
        return changed

    def _subdirectories(self) -> Tuple[Path, ...]:
        return self.checkpoints, self.tensorboard, self.metrics_csv.parent, self.plots


def checkpoint_file(path: Union[str, os.PathLike]) -> Path:
    """The checkpoint file ``path`` names: a ``.ckpt`` file, or a run directory's deployed checkpoint
    (``averaged.ckpt`` when the run wrote one, else ``best.ckpt``; its ``checkpoints/`` folder given instead works
    too). CheckpointError naming what is wrong, before anything is read: a mistyped path is answered without
    loading torch."""
    if not is_text_path(path) or not os.fspath(path).strip():
        # "" would be the current directory, which may well hold a run: another model than the one meant
        raise CheckpointError(f"a checkpoint is the path of a .ckpt file or a run directory, got {path!r}")
    path = Path(path)
    if path.is_dir():
        run = RunDirectory(path.parent if path.name == CHECKPOINTS else path)
        if not run.deployed_checkpoint.is_file():
            raise CheckpointError(f"{path}: a directory that holds no run's checkpoints (no checkpoints/best.ckpt or "
                                  "averaged.ckpt); pass a .ckpt file or a run directory")
        return run.deployed_checkpoint
    require_regular_file(path, "checkpoint", CheckpointError)
    return path


def _same_file(handle: IO, path: Path) -> bool:
    try:
        return os.path.samestat(os.fstat(handle.fileno()), os.stat(path))
    except FileNotFoundError:
        return False


def latest_run(output_dir: Path) -> Optional[Path]:
    """The run ``OUTPUT_DIR/latest`` names (symlink or text file), or None when there is none or it is not ours."""
    link = Path(output_dir) / LATEST
    name = os.readlink(link) if link.is_symlink() else _pointer_file_text(link)
    return Path(output_dir) / name if name else None


def _pointer_file_text(link: Path) -> str:
    """The run name a text ``latest`` holds, as :func:`_replace_link` writes it where symlinks are impossible; ""
    for anything else: no file, a folder, or a file of the user's (unreadable, not text, or not a run's name), which
    is then never overwritten."""
    try:
        if not link.is_file() or link.stat().st_size > MAX_POINTER_BYTES:
            return ""
        name = link.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError):
        return ""
    return name if RUN_NAME.fullmatch(name) else ""


def set_latest(output_dir: Path, name: Optional[str]) -> Optional[str]:
    """Point ``OUTPUT_DIR/latest`` at the run ``name`` (None removes it) and return the name it held before, so a
    run removed again can hand ``latest`` back. A failure to write it is logged, never fatal: it is a convenience."""
    link = Path(output_dir) / LATEST
    before = latest_run(output_dir)
    if link.exists() and not link.is_symlink() and before is None:
        log.warning("%s is not ours (a folder, or a file that names no run): not pointing it at the newest run",
                    link)
        return None
    try:
        if name is None:
            link.unlink(missing_ok=True)
        else:
            _replace_link(link, name)
    except (OSError, OutputError) as error:
        log.warning("could not point %s at %s: %s", link, name, error)
    return before.name if before is not None else None


def hand_back_latest(output_dir: Path, name: str, before: Optional[str]) -> None:
    """Point ``latest`` back at ``before`` if it still names the run ``name`` (removed again): a newer run that
    took it meanwhile keeps it."""
    current = latest_run(output_dir)
    if current is not None and current.name == name:
        set_latest(output_dir, before)


def _replace_link(link: Path, name: str) -> None:
    """A relative symlink swapped in atomically; a one-line text file where symlinks are impossible."""
    temporary = link.with_name(f".{link.name}.{os.getpid()}.tmp")
    try:
        os.symlink(name, temporary)
    except (OSError, NotImplementedError):
        with atomic_open(link, "w") as stream:
            stream.write(f"{name}\n")
        return
    try:
        os.replace(temporary, link)
    except OSError:
        os.unlink(temporary)
        raise


def timestamped_directory(parent: Path, prefix: str) -> Path:
    """A new, empty ``parent/<prefix>_YYYYMMDD_HHMMSS`` (``_2``, ``_3``... when that second is taken)."""
    parent = Path(parent)
    ensure_writable(parent)
    stamp = time.strftime("%Y%m%d_%H%M%S")
    for attempt in range(1, 1000):
        root = parent / (f"{prefix}_{stamp}" if attempt == 1 else f"{prefix}_{stamp}_{attempt}")
        try:
            root.mkdir()
        except FileExistsError:
            continue
        return root
    raise ConfigError(f"{parent}: could not create a new {prefix} directory")


def ensure_outside(output: Path, data_dir: Path, what: str, culprit: Optional[Path] = None) -> None:
    """Refuse an output location equal to or inside the data directory: nothing is ever written into the data.
    ``culprit`` is the file that chose the location (a resumed checkpoint, whose run directory it is): named first."""
    output, data = Path(output).resolve(), Path(data_dir).resolve()
    inside = next((root for root in _data_roots(data) if output == root or root in output.parents), None)
    if inside is not None and culprit is not None:
        raise OutputError(f"{culprit}: this checkpoint lies inside the data directory {data}, and resuming it would "
                          f"write its run ({output}) there; move the checkpoint's run directory out of the data "
                          "and resume from there (nothing is ever written into the data)")
    if inside is not None:
        where = "" if inside == data else f" (in {inside}, which a link in it points to)"
        raise OutputError(f"{output}: the {what} would be inside the data directory {data}{where}; "
                          "choose a folder outside it (nothing is ever written into the data)")


def ensure_outside_runs(output: Path) -> None:
    """Refuse a new run's output folder inside an earlier run: a run's folder holds that run alone (its checkpoints
    are reconciled with what lies there, its logs are its own)."""
    resolved = Path(output).resolve()
    for folder in (resolved, *resolved.parents):
        try:
            earlier_run = (folder / EXPERIMENT_CONFIG).is_file() and (folder / CHECKPOINTS).is_dir()
        except OSError:  # a folder this user may not search: the writability check names it
            continue
        if earlier_run:
            raise OutputError(f"{output}: the output directory would be inside the earlier run {folder}; choose a "
                              "folder outside it (runs are made side by side)")


def _data_roots(data: Path) -> List[Path]:
    """The data directory and where the links among its patient folders, their sub-folders and their transitions
    files lead: patient folders and labels may be links to other disks, and what is written there is written into
    the data."""
    roots, level = [data], [data]
    for depth in range(2):  # patient folders, then their ft1 / ft2
        try:
            children = [child for folder in level for child in folder.iterdir() if child.is_dir()]
        except OSError:
            break
        roots += [child.resolve() for child in children if child.is_symlink()]
        if depth == 0:
            labels = [child / TRANSITIONS_FILE for child in children]
            roots += [label.resolve().parent for label in labels if label.is_symlink()]
        level = children
    return roots


def refuse_earlier_report(output_dir: Optional[Path], files: Sequence[str]) -> None:
    """Refuse an ``output_dir`` that is empty text (an unset variable: it would read as the current folder) or that
    holds an earlier report (any of ``files``: a run's own test_evaluation/, say), which writing would replace
    without a word. Checked before anything is loaded; leaving ``output_dir`` out writes a new timestamped folder."""
    if output_dir is None:
        return
    if not str(output_dir).strip():
        raise OutputError("the report's output folder is empty (an unset variable?): name a folder, or leave it out "
                          "for a new one")
    earlier = [name for name in files if (Path(output_dir) / name).exists()]
    if earlier:
        raise OutputError(f"{output_dir}: holds an earlier report ({earlier[0]}); name a new folder, or leave it out "
                          "for a new one")


def report_directory(output_dir: Optional[Path], default: Path, data_dirs: Sequence[Path], what: str) -> Path:
    """Where a command writes its report: ``output_dir`` (made if needed), else a new ``<default>_<timestamp>``;
    refused inside any of the user's ``data_dirs`` before anything is made, and proven writable."""
    chosen = default if output_dir is None else Path(output_dir)
    for data_dir in data_dirs:
        ensure_outside(chosen, data_dir, what)
    if output_dir is None:
        return timestamped_directory(default.parent, default.name)
    ensure_writable(chosen)
    return chosen


@contextlib.contextmanager
def removed_if_left_empty(directory: Path, made_here: bool) -> Iterator[Path]:
    """Run the block that fills ``directory``; should it fail while the directory is still empty and this command
    made it (``made_here``), remove it again: a failed command leaves no empty folder behind, and a folder that was
    there before is never touched."""
    try:
        yield directory
    except BaseException:
        if made_here and directory.is_dir() and not any(directory.iterdir()):
            directory.rmdir()
        raise


def ensure_writable(directory: Path) -> None:
    """Create ``directory`` if needed and prove it is writable, before any work starts."""
    directory = Path(directory)
    if directory.exists() and not directory.is_dir():
        raise ConfigError(f"{directory}: output directory is a file; name a directory (new or existing)")
    try:
        directory.mkdir(parents=True, exist_ok=True)
        probe = directory / f".write_probe_{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as error:
        reason = "permission denied" if error.errno in (errno.EACCES, errno.EPERM) else (error.strerror or str(error))
        raise ConfigError(f"{directory}: output directory is not writable ({reason})") from None


def write_experiment_config(
    run: RunDirectory, config: Mapping[str, Any], environment: Mapping[str, Any],
    argv: Optional[Sequence[str]] = None, extra: Optional[Mapping[str, Any]] = None,
) -> Path:
    """``experiment_config.json``: the fully resolved config, the command line, the ``environment`` (versions and
    device: :func:`~cardiac_dreamer.runtime.devices.environment_info`) and seed. A resume keeps the command line and
    time that started the run and adds its own to ``resumes``: how the run began is not lost to how it was
    continued."""
    command, now = list(sys.argv if argv is None else argv), time.strftime(RECORD_TIME)
    record = {
        "config": dict(config),
        "command_line": command,
        "seed": config["training"]["seed"],
        "environment": dict(environment),
        "created": now,
        **(extra or {}),
    }
    earlier = _earlier_record(run.experiment_config)
    if earlier:
        record.update(command_line=earlier.get("command_line", command), created=earlier.get("created", now),
                      resumes=[*earlier.get("resumes", []), {"command_line": command, "at": now}])
    return write_json(run.experiment_config, record)


def _earlier_record(path: Path) -> Optional[Dict[str, Any]]:
    """The run's earlier ``experiment_config.json`` when it is a readable object (a resume's), else None."""
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) and isinstance(record.get("resumes", []), list) else None
