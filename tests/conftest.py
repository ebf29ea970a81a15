"""Shared fixtures: folders shaped exactly like the real exports, and the synthetic phantom."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Sequence

import numpy as np
import pytest
from PIL import Image


SHARED_MEMORY = Path("/dev/shm")
TEMP_FILES_GB = 4.5  # what one test process keeps at a time, nearly all checkpoints
MIN_AVAILABLE_MEMORY_GB = 12  # for one process; each further pytest-xdist worker adds its TEMP_FILES_GB


def pytest_configure(config):
    """Each pytest-xdist worker (``-n 2`` in setup.cfg) takes its share of the cores for torch's threads: two workers
    of two threads on 2 cores fight over them, and the suite ran no faster than one process (12 min 16 s against
    12 min 2 s); with one thread each it took 10 min 19 s against 16 min 37 s on a slower host.

    The tests write GBs of checkpoints: on a Linux machine with memory to spare their temporary folders go to shared
    memory (checkpoint-heavy files ran 15 % faster there than on disk, 196 s against 231 s), unless ``--basetemp``
    or ``PYTEST_DEBUG_TEMPROOT`` says where."""
    from cardiac_dreamer.runtime.threads import usable_cpus

    cpus = usable_cpus()
    workers = _test_processes(config, cpus)
    if "PYTEST_XDIST_WORKER" in os.environ:
        import torch

        torch.set_num_threads(max(1, cpus // workers))
    if config.option.basetemp or "PYTEST_DEBUG_TEMPROOT" in os.environ:
        return
    if SHARED_MEMORY.is_dir() and os.access(SHARED_MEMORY, os.W_OK) and \
            _available_memory_gb() >= MIN_AVAILABLE_MEMORY_GB + TEMP_FILES_GB * (workers - 1):
        os.environ["PYTEST_DEBUG_TEMPROOT"] = str(SHARED_MEMORY)


def _test_processes(config, cpus: int) -> int:
    """How many processes run tests at once: pytest-xdist's workers (``-n 2``, ``-n auto``), else this one."""
    count = os.environ.get("PYTEST_XDIST_WORKER_COUNT") or getattr(config.option, "numprocesses", None) or 1
    return max(1, int(count)) if str(count).isdigit() else cpus


def _available_memory_gb() -> float:
    """What Linux says it could give new allocations without swapping (``MemAvailable``); 0 where it does not say."""
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) / 2**20  # kB -> GB
    except OSError:
        pass
    return 0.0


def _gray_frame(frame: int, size: int) -> np.ndarray:
    """A horizontal ramp shifted by the frame number, ``[size, size]`` uint8."""
    ramp = (np.arange(size) * 255 // max(size - 1, 1) + 3 * frame) % 256
    return np.tile(ramp.astype(np.uint8), (size, 1))


def _pose(patient_number: int, frame: int) -> list:
    """A pose in mm and degrees, smooth in the frame number, distinct per patient."""
    t = frame + 10.0 * patient_number
    return [round(v, 4) for v in (100 + 2 * t, -50 + 0.5 * t, 30 - t, 5 + 0.3 * t, -10 + 0.2 * t, 40 - 0.25 * t)]


def write_real_export(
    root: Path, patients: Sequence[str] = ("data_0513_01", "data_0513_02", "data_0513_03"), pairs: int = 6,
    size: int = 224,
) -> Path:
    """Write ``root/<patient>/{ft1,ft2}/*.png`` (RGB) and ``transitions_dataset.json`` the way the real
    exporter does: backslash paths, extra ``frame_t1``/``frame_t2`` keys, additive labels."""
    root = Path(root)
    for number, patient in enumerate(patients):
        tag = patient.split("_", 1)[1]  # "data_0513_01" -> "0513_01"
        folder = root / patient
        (folder / "ft1").mkdir(parents=True)
        (folder / "ft2").mkdir()
        entries = []
        for k in range(pairs):
            name = f"frames_{tag}_{k:04d}.png"
            for sub, frame in (("ft1", k), ("ft2", k + 1)):
                gray = _gray_frame(frame, size)
                # R = G = B: the real exports are RGB files carrying a grayscale signal.
                Image.fromarray(np.stack([gray] * 3, axis=-1)).save(folder / sub / name)
            at1, at2 = _pose(number, k), _pose(number, k + 1)
            entries.append(
                {
                    "ft1_image_path": f"ft1\\{name}",
                    "ft2_image_path": f"ft2\\{name}",
                    "frame_t1": k,
                    "frame_t2": k + 1,
                    "at1_6dof": at1,
                    "action_change_6dof": [b - a for a, b in zip(at1, at2)],
                    "at2_6dof": at2,
                }
            )
        (folder / "transitions_dataset.json").write_text(json.dumps(entries, indent=2))
    return root


@pytest.fixture(autouse=True, scope="session")
def private_image_cache(tmp_path_factory):
    """Disk packs of decoded images go to a folder of the test session, never the user's ~/.cache."""
    previous = os.environ.get("CARDIAC_DREAMER_CACHE")
    os.environ["CARDIAC_DREAMER_CACHE"] = str(tmp_path_factory.mktemp("image_cache"))
    yield
    if previous is None:
        os.environ.pop("CARDIAC_DREAMER_CACHE", None)
    else:
        os.environ["CARDIAC_DREAMER_CACHE"] = previous


@pytest.fixture
def make_real_export():
    """Factory: ``make_real_export(root, patients=(...), pairs=6, size=224) -> root``."""
    return write_real_export


@pytest.fixture
def real_export(tmp_path, make_real_export) -> Path:
    """Three small patients shaped like the real export (64x64 images keep tests fast)."""
    return make_real_export(tmp_path / "data", pairs=4, size=64)


@pytest.fixture(scope="session")
def phantom_dir(tmp_path_factory) -> Path:
    """Four synthetic patients written by the phantom generator, shared by the whole session."""
    from cardiac_dreamer.synthetic import generate_phantom

    directory = tmp_path_factory.mktemp("phantom")
    generate_phantom(directory, num_patients=4, pairs_per_patient=12, image_size=64, seed=0)
    return directory


@pytest.fixture(scope="session")
def trained_run(phantom_dir, tmp_path_factory) -> Path:
    """A finished 1-epoch run of the tiny model on the phantom, trained by the command line once for the session;
    tests copy what they change."""
    from test_reliability import SPLIT, TINY, run_cli

    output = tmp_path_factory.mktemp("trained")
    result = run_cli("--data_dir", phantom_dir, "--output_dir", output, "--max_epochs", 1, *TINY, *SPLIT)
    assert result.returncode == 0, result.stderr
    (run,) = output.glob("run_*")
    return run
