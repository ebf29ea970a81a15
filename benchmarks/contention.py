"""A shared machine: the demo's wall time alone and with a second demo beside it, with the code before the CPU thread
policy and with this tree. Run it on an otherwise idle machine (check ``uptime``): the neighbours are the point.

    python benchmarks/contention.py                     # before = the merge base of HEAD and main
    python benchmarks/contention.py --before 04d436a --repeats 2

Prints one JSON line per (code, demos at once): every demo's wall seconds and the slowdown against the same code
alone. The demo data is written once, outside the timings; any OMP_* variable of the caller's is removed, so each
tree's own policy decides.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parents[1]


def export_tree(ref: str, target: Path) -> Path:
    """The package as committed at ``ref``, unpacked into ``target``."""
    target.mkdir(parents=True)
    archive = subprocess.run(["git", "-C", str(REPOSITORY), "archive", ref, "cardiac_dreamer"], check=True,
                             capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(target)], input=archive, check=True)
    return target


def demo_seconds(tree: Path, data_dir: Path, scratch: Path, at_once: int) -> list:
    """Start ``at_once`` demos together; each one's wall seconds."""
    env = {key: value for key, value in os.environ.items() if not key.startswith(("OMP_", "GOMP_"))}
    env["PYTHONPATH"] = str(tree)
    processes = []
    for number in range(at_once):
        output = Path(tempfile.mkdtemp(dir=scratch))
        command = [sys.executable, "-m", "cardiac_dreamer.train", "--demo", "--no_progress", "--data_dir",
                   str(data_dir), "--output_dir", str(output)]
        processes.append((time.perf_counter(), subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL,
                                                                stderr=open(output / "log.txt", "w"))))
    seconds = []
    for started, process in processes:
        if process.wait() != 0:
            raise RuntimeError(f"demo failed ({process.args}); see its log.txt")
        seconds.append(time.perf_counter() - started)
    return seconds


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", help="git ref of the code before the policy (default: merge base with main)")
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args(argv)
    before = args.before or subprocess.run(["git", "-C", str(REPOSITORY), "merge-base", "HEAD", "main"], check=True,
                                           capture_output=True, text=True).stdout.strip()
    with tempfile.TemporaryDirectory(prefix="cardiac_dreamer_contention_") as scratch:
        scratch = Path(scratch)
        sys.path.insert(0, str(REPOSITORY))
        from cardiac_dreamer.synthetic import generate_phantom

        data_dir = scratch / "demo_data"
        generate_phantom(data_dir, num_patients=6, pairs_per_patient=128, image_size=64, seed=0)  # as --demo does
        trees = {f"before ({before[:10]})": export_tree(before, scratch / "before"), "after": REPOSITORY}
        for code, tree in trees.items():
            alone = None
            for at_once in (1, 2):
                seconds = [s for _ in range(args.repeats) for s in demo_seconds(tree, data_dir, scratch, at_once)]
                slowest = max(seconds)
                alone = alone or slowest
                print(json.dumps({"code": code, "demos_at_once": at_once, "wall_s": seconds,
                                  "slowdown_vs_alone": slowest / alone, "cpus": len(os.sched_getaffinity(0))}),
                      flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
