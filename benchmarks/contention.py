"""Jobs started together: ``cardiac-train --demo`` alone, then two demos started at the same moment, and the ratio of
the slower of the two to the one alone (issue 22's target: at most 2.6x). Run it on an otherwise idle machine (check
``uptime``): the neighbour is the point, and any other load makes the figures meaningless.

    python benchmarks/contention.py                     # this tree only
    python benchmarks/contention.py --before 04d436a    # and the code at 04d436a, for comparison
    python benchmarks/contention.py --repeats 2
    python benchmarks/contention.py --keep demo_logs  # and keep what each demo printed (the alone one: the demo)

Prints one JSON line per (code, demos at once): every demo's wall seconds and the slowdown against the same code
alone, then a last line ``{"two_together_vs_one_alone": R, "target": 2.6}`` for this tree (exit code 1 above the
target). The demo data is
written once, outside the timings; any OMP_* variable of the caller's is removed, so each tree's own policy decides
(and its thread governor re-decides while training).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Optional

REPOSITORY = Path(__file__).resolve().parents[1]
TARGET_RATIO = 2.6  # issue 22: two demos started together finish within 2.6x the time of one alone


def export_tree(ref: str, target: Path) -> Path:
    """The package as committed at ``ref``, unpacked into ``target``."""
    target.mkdir(parents=True)
    archive = subprocess.run(["git", "-C", str(REPOSITORY), "archive", ref, "cardiac_dreamer"], check=True,
                             capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(target)], input=archive, check=True)
    return target


def demo_seconds(tree: Path, data_dir: Path, scratch: Path, at_once: int, keep: Optional[Path] = None,
                 tag: str = "") -> list:
    """Start ``at_once`` demos together; each one's wall seconds. With ``keep``, each demo's printed output (its
    final evaluation table included) is copied there as ``demo_<tag><at_once>x_<n>.txt``."""
    env = {key: value for key, value in os.environ.items() if not key.startswith(("OMP_", "GOMP_"))}
    env["PYTHONPATH"] = str(tree)
    processes = []
    for number in range(at_once):
        output = Path(tempfile.mkdtemp(dir=scratch))
        command = [sys.executable, "-m", "cardiac_dreamer.train", "--demo", "--no_progress", "--data_dir",
                   str(data_dir), "--output_dir", str(output)]
        log = open(output / "log.txt", "w")
        processes.append((time.perf_counter(), output, subprocess.Popen(command, env=env, stdout=log,
                                                                        stderr=subprocess.STDOUT)))
    seconds = []
    for number, (started, output, process) in enumerate(processes):
        if process.wait() != 0:
            raise RuntimeError(f"demo failed ({process.args}); see its log.txt")
        seconds.append(time.perf_counter() - started)
        if keep is not None:
            keep.mkdir(parents=True, exist_ok=True)
            shutil.copy(output / "log.txt", keep / f"demo_{tag}{at_once}x_{number + 1}.txt")
    return seconds


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--before", help="git ref of older code to measure too (default: this tree only)")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--keep", type=Path, help="copy each demo's printed output into this folder")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="cardiac_dreamer_contention_") as scratch:
        scratch = Path(scratch)
        sys.path.insert(0, str(REPOSITORY))
        from cardiac_dreamer.cli.train_command import DEMO_PATIENTS, DEMO_SETTINGS
        from cardiac_dreamer.config import apply_overrides, load_config
        from cardiac_dreamer.synthetic import generate_phantom

        data_dir = scratch / "demo_data"  # exactly what --demo writes into OUTPUT_DIR/demo_data
        image_size = apply_overrides(load_config("debug"), DEMO_SETTINGS).data.image_size
        generate_phantom(data_dir, num_patients=DEMO_PATIENTS, image_size=image_size, seed=0)
        trees = {f"before ({args.before})": export_tree(args.before, scratch / "before")} if args.before else {}
        trees["this tree"] = REPOSITORY
        for code, tree in trees.items():
            alone = None
            for at_once in (1, 2):
                seconds = [s for repeat in range(args.repeats)
                           for s in demo_seconds(tree, data_dir, scratch, at_once, args.keep,
                                                 tag=f"{'before_' if tree != REPOSITORY else ''}r{repeat + 1}_")]
                slowest = max(seconds)
                alone = alone or slowest
                ratio = slowest / alone
                print(json.dumps({"code": code, "demos_at_once": at_once, "wall_s": seconds,
                                  "slowdown_vs_alone": ratio, "cpus": len(os.sched_getaffinity(0))}), flush=True)
        print(json.dumps({"two_together_vs_one_alone": ratio, "target": TARGET_RATIO}))
    return 0 if ratio <= TARGET_RATIO else 1


if __name__ == "__main__":
    sys.exit(main())
