"""The GPU check: the production config in bf16 and fp16, at batch 16 and at the largest batch that fits, eager and
compiled; one JSON line per run, everything inside a time budget.

    bash benchmarks/gpu_check.sh              # on a CUDA machine: at most 5 minutes, wall clock
    python benchmarks/gpu_check.py --dry_run  # the same sequence on the CPU with a tiny model (tests its shape)

Each run is :func:`cardiac_dreamer.benchmarking.throughput.run_benchmark` (the Trainer on its DataLoader), so a line
holds ``samples_per_s``, ``peak_gpu_memory_mb``, ``mfu``, ``data_wait_fraction`` and the rest. The runs go in order of
importance (eager before compiled, batch 16 before the largest) and each is given what is left of ``--budget_s``
(compiled runs need ``--compile_reserve_s`` of it): what does not fit is printed as skipped, so the check always ends
in time with the most useful figures. Trains on the synthetic phantom written to a temporary folder (no internet,
no data needed); a run that runs out of GPU memory prints its error and the check goes on.
"""
from __future__ import annotations

import argparse
import contextlib
import gc
import json
import math
import signal
import sys
import tempfile
import time
from typing import Callable, Dict, Iterator, List, Optional

import cardiac_dreamer.cli  # noqa: F401  (first: it sets the CPU thread policy before torch loads)
import torch

from cardiac_dreamer.cli.common import run_script
from cardiac_dreamer.config import Config, apply_overrides, load_yaml, merge, resolve_config_path
from cardiac_dreamer.errors import error_text
from cardiac_dreamer.synthetic import generate_phantom
from cardiac_dreamer.benchmarking.throughput import run_benchmark

BASE_BATCH = 16
PHANTOM_PAIRS = 512  # larger batches repeat pairs (images are decoded once either way)
TINY_MODEL = {"data.image_size": 64, "model.d_model": 32, "model.num_heads": 2, "model.num_layers": 1,
              "training.num_workers": 0, "training.device": "cpu"}


class RunTimeout(Exception):
    """A run used up the time it was given."""


def largest_batch(fits: Callable[[int], bool], start: int, limit: int, step: int = 16) -> Optional[int]:
    """The largest multiple of ``step`` in ``[start, limit]`` for which ``fits`` holds, assuming it holds up to some
    size and fails above: doubling from ``start``, then halving the gap to ``step``. None when ``start`` fails."""
    if not fits(start):
        return None
    good, bad = start, None
    while bad is None and good < limit:
        candidate = min(2 * good, limit)
        if fits(candidate):
            good = candidate
        else:
            bad = candidate
    while bad is not None and bad - good > step:
        middle = (good + bad) // 2 // step * step
        if middle <= good:
            break
        if fits(middle):
            good = middle
        else:
            bad = middle
    return good


@contextlib.contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    """Raise :class:`RunTimeout` in this (main) thread after ``seconds``."""
    def expire(signum, frame):
        raise RunTimeout(f"timed out after {seconds:.0f} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, max(seconds, 0.01))
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


class Check:
    """Runs benchmarks against one deadline and prints one JSON line per run."""

    def __init__(self, config: Config, args: argparse.Namespace):
        self.config = config
        self.args = args
        self.started = time.monotonic()
        self.lines: List[Dict] = []

    def left_s(self) -> float:
        return self.args.budget_s - (time.monotonic() - self.started)

    def emit(self, line: Dict) -> Dict:
        line = {"check": "gpu", **line, "elapsed_s": round(time.monotonic() - self.started, 1)}
        self.lines.append(line)
        print(json.dumps(line), flush=True)
        return line

    def run(self, precision: str, batch_size: int, compile: bool, steps: int, warmup: int, probe: bool = False) -> Dict:
        """One benchmark line, or why there is none (skipped, out of memory, timed out)."""
        label = {"precision": precision, "batch_size": batch_size, "compile": compile, "probe": probe}
        needed = self.args.compile_reserve_s if compile else self.args.eager_reserve_s
        if self.left_s() < needed:
            return self.emit({**label, "skipped": f"{self.left_s():.0f} s left of the budget, {needed:.0f} s needed"})
        if compile and self.args.dry_run:
            return self.emit({**label, "skipped": "dry run: torch.compile is only measured on the GPU"})
        config = apply_overrides(self.config, {"training.precision": precision, "training.batch_size": batch_size,
                                               "training.compile": compile})
        started = time.monotonic()
        try:
            with time_limit(self.left_s()):
                result = run_benchmark(config, steps=steps, warmup=warmup, rounds=1)
            return self.emit({**label, **result, "run_s": round(time.monotonic() - started, 1)})
        except (torch.cuda.OutOfMemoryError, RunTimeout) as error:
            return self.emit({**label, "error": error_text(error, named=True)})
        finally:
            release_memory()

    def fits(self, precision: str, batch_size: int) -> bool:
        """Whether training steps at ``batch_size`` ran (a short run marked ``probe``); False also when the budget
        left no time to try, so the probe stops where the budget does."""
        return "samples_per_s" in self.run(precision, batch_size, compile=False, steps=1, warmup=0, probe=True)


def release_memory() -> None:
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def check_config(dry_run: bool, data_dir: str) -> Config:
    """The production preset on the phantom (a tiny model on the CPU for a dry run)."""
    config = merge(Config(), load_yaml(resolve_config_path("production")), source="production")
    overrides = {"data.data_dir": data_dir, "data.manual_splits": False}
    return apply_overrides(config, {**overrides, **(TINY_MODEL if dry_run else {})})


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="benchmarks/gpu_check.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--budget_s", type=float, default=270.0, help="wall-clock budget for all runs (seconds)")
    parser.add_argument("--precisions", default="bf16,16", help="comma-separated precisions")
    parser.add_argument("--max_batch", type=int, default=1024, help="largest batch size probed")
    parser.add_argument("--steps", type=int, default=5, help="measured steps per run (after the warm-up)")
    parser.add_argument("--warmup", type=int, default=2, help="unmeasured steps per run (compilation happens here)")
    parser.add_argument("--eager_reserve_s", type=float, default=15.0, help="time an eager run needs to start")
    parser.add_argument("--compile_reserve_s", type=float, default=75.0, help="time a compiled run needs to start")
    parser.add_argument("--dry_run", action="store_true", help="CPU, tiny model, no compile: checks the sequence")
    args = parser.parse_args(argv)
    if not args.dry_run and not torch.cuda.is_available():
        print(json.dumps({"check": "gpu", "error": "no CUDA device (use --dry_run to check the script on a CPU)"}))
        return 2
    precisions = args.precisions.split(",")
    with tempfile.TemporaryDirectory(prefix="cardiac_dreamer_gpu_check_") as scratch:
        config = check_config(args.dry_run, scratch)
        generate_phantom(scratch, num_patients=4, pairs_per_patient=math.ceil(PHANTOM_PAIRS / 4), seed=0,
                         image_size=config.data.image_size)
        check = Check(config, args)
        for precision in precisions:
            check.run(precision, BASE_BATCH, compile=False, steps=args.steps, warmup=args.warmup)
        biggest = largest_batch(lambda size: check.fits(precisions[0], size), BASE_BATCH, args.max_batch)
        check.emit({"largest_batch": biggest, "precision": precisions[0], "max_batch_probed": args.max_batch})
        sizes = [BASE_BATCH] + ([biggest] if biggest and biggest != BASE_BATCH else [])
        for precision in precisions:
            if len(sizes) > 1:
                check.run(precision, biggest, compile=False, steps=args.steps, warmup=args.warmup)
        for size in sizes:
            for precision in precisions:
                check.run(precision, size, compile=True, steps=args.steps, warmup=args.warmup)
    return 0


if __name__ == "__main__":
    sys.exit(run_script(main))
