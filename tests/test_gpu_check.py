"""The GPU check's shape, on the CPU: the batch probe, one JSON line per run, and a budget that is never overrun."""
import json
import runpy
from pathlib import Path

import pytest

GPU_CHECK = runpy.run_path(str(Path(__file__).parents[1] / "benchmarks" / "gpu_check.py"))
largest_batch = GPU_CHECK["largest_batch"]


@pytest.mark.parametrize("capacity, expected", [(300, 288), (1000, 992), (16, 16), (5000, 1024), (10, None)])
def test_the_probe_finds_the_largest_fitting_multiple_of_16(capacity, expected):
    tried = []

    def fits(size):
        tried.append(size)
        return size <= capacity

    assert largest_batch(fits, start=16, limit=1024) == expected
    assert len(tried) <= 12 and max(tried) <= 1024


def run_check(capsys, *flags):
    assert GPU_CHECK["main"](["--dry_run", "--precisions", "bf16", "--steps", "1", "--warmup", "0", *flags]) == 0
    return [json.loads(line) for line in capsys.readouterr().out.splitlines()]


def test_the_dry_run_prints_a_line_per_run_with_the_figures_to_compare(capsys):
    lines = run_check(capsys, "--max_batch", "32")
    runs = [line for line in lines if "samples_per_s" in line and not line["probe"]]
    assert [(line["batch_size"], line["compile"]) for line in runs] == [(16, False), (32, False)]
    for line in runs:
        assert {"peak_gpu_memory_mb", "mfu", "data_wait_fraction", "peak_rss_mb"} <= set(line)
    assert {"largest_batch": 32}.items() <= next(line for line in lines if "largest_batch" in line).items()
    assert [line["compile"] for line in lines if "skipped" in line] == [True, True]


def test_runs_beyond_the_budget_are_skipped_not_started(capsys):
    lines = run_check(capsys, "--budget_s", "0")
    assert all("skipped" in line for line in lines if "batch_size" in line)
    assert next(line for line in lines if "largest_batch" in line)["largest_batch"] is None
