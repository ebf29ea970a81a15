"""The run directory a person finds after a run: no lock left behind, and ``latest`` naming the newest run."""
import os
import signal
import subprocess
import sys
import textwrap

import pytest

from cardiac_dreamer.errors import ConfigError
from cardiac_dreamer.io.run_dir import LATEST, LOCK_FILE, RunDirectory, hand_back_latest, latest_run, set_latest

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="runs are locked with flock on POSIX only")


@pytest.fixture
def run(tmp_path):
    return RunDirectory.create(tmp_path / "outputs")


def test_a_run_that_ends_leaves_no_lock_file(run):
    with run.lock():
        assert (run.root / LOCK_FILE).exists()
    assert not (run.root / LOCK_FILE).exists()


@pytest.mark.parametrize("stop", [RuntimeError("a bug"), KeyboardInterrupt()], ids=["error", "ctrl-c"])
def test_a_run_that_fails_or_is_interrupted_leaves_no_lock_file(run, stop):
    with pytest.raises(type(stop)):
        with run.lock():
            raise stop
    assert not (run.root / LOCK_FILE).exists()


def test_a_second_holder_is_refused_while_the_run_is_held(run):
    with run.lock():
        with pytest.raises(ConfigError, match="in use by another process"):
            with run.lock():
                pass
        assert (run.root / LOCK_FILE).exists()  # the refused one removed nothing
    with run.lock():  # and once released, the run can be taken again
        pass


def test_the_lock_file_of_a_killed_process_is_stale_and_taken_by_the_next_run(run):
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import time
        from pathlib import Path
        from cardiac_dreamer.io.run_dir import RunDirectory
        with RunDirectory(Path({str(run.root)!r})).lock():
            print("locked", flush=True)
            time.sleep(60)
        """)], stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(ConfigError, match="in use"):
            with run.lock():
                pass
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    assert (run.root / LOCK_FILE).exists()  # a killed process cannot clean up...
    with run.lock():  # ...but holds nothing: the next run takes the run
        pass
    assert not (run.root / LOCK_FILE).exists()


def test_latest_is_a_relative_symlink_to_the_newest_run(tmp_path):
    first = RunDirectory.create(tmp_path).root
    second = RunDirectory.create(tmp_path).root
    assert set_latest(tmp_path, first.name) is None
    assert set_latest(tmp_path, second.name) == first.name  # the name it held before, to hand back
    link = tmp_path / LATEST
    assert link.is_symlink() and os.readlink(link) == second.name
    assert (link / "checkpoints").is_dir()
    moved = tmp_path.rename(tmp_path.with_name("moved"))
    assert latest_run(moved) == moved / second.name and (moved / LATEST / "checkpoints").is_dir()


def test_a_run_removed_again_hands_latest_back_unless_a_newer_run_took_it(tmp_path):
    older, failing, newer = (tmp_path / f"run_{i}" for i in range(3))
    for run in (older, failing, newer):
        run.mkdir()
    set_latest(tmp_path, older.name)
    before = set_latest(tmp_path, failing.name)
    hand_back_latest(tmp_path, failing.name, before)
    assert latest_run(tmp_path) == older  # no newer run: back to the one it named before
    set_latest(tmp_path, failing.name)
    set_latest(tmp_path, newer.name)  # a newer run started while the failing one was still setting up
    hand_back_latest(tmp_path, failing.name, before)
    assert latest_run(tmp_path) == newer


def test_latest_is_removed_when_handed_back_to_no_run(tmp_path):
    set_latest(tmp_path, RunDirectory.create(tmp_path).root.name)
    set_latest(tmp_path, None)
    assert not os.path.lexists(tmp_path / LATEST) and latest_run(tmp_path) is None


def test_latest_is_a_text_file_where_symlinks_are_impossible(tmp_path, monkeypatch):
    run = RunDirectory.create(tmp_path).root

    def no_symlinks(*args, **kwargs):
        raise OSError(1, "Operation not permitted")

    monkeypatch.setattr(os, "symlink", no_symlinks)
    set_latest(tmp_path, run.name)
    link = tmp_path / LATEST
    assert not link.is_symlink() and link.read_text() == f"{run.name}\n"
    assert latest_run(tmp_path) == run
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
    newer = RunDirectory.create(tmp_path).root
    assert set_latest(tmp_path, newer.name) == run.name  # its own pointer, replaced by the next run
    assert latest_run(tmp_path) == newer


def test_a_folder_of_the_users_named_latest_is_left_alone(tmp_path):
    (tmp_path / LATEST).mkdir()
    (tmp_path / LATEST / "notes.txt").write_text("mine")
    assert set_latest(tmp_path, RunDirectory.create(tmp_path).root.name) is None
    assert (tmp_path / LATEST / "notes.txt").read_text() == "mine"


@pytest.mark.parametrize("content", [b"precious notes\n", b"run\xff\n", b"../elsewhere\n"],
                         ids=["text", "not UTF-8", "a path"])
def test_a_file_of_the_users_named_latest_is_left_alone(tmp_path, content):
    """Only the one-line pointer this package writes is ours to replace; a user's small file is not."""
    (tmp_path / LATEST).write_bytes(content)
    assert latest_run(tmp_path) is None
    assert set_latest(tmp_path, RunDirectory.create(tmp_path).root.name) is None
    assert (tmp_path / LATEST).read_bytes() == content

