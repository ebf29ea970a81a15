"""Write a synthetic phantom the size of the field's data sets (Cardiac Copilot trained on 151k pairs) to measure on.

    python benchmarks/make_phantom.py /data/phantom_150k --pairs 150000 --patients 30 --image_size 224

``--phantom v3`` writes the static phantom of before (v4, the default, renders two volumes a frame: a little slower).

Prints one JSON line: pairs, patients, image files, bytes on disk and seconds. ``--frames_per_patient`` is passed to
:func:`~cardiac_dreamer.synthetic.generate_phantom` only when given (a streaming generator takes it; an older one
refuses it with a TypeError).
"""
from __future__ import annotations

import argparse
import json
import logging
import math
import sys
import time
from pathlib import Path

from cardiac_dreamer.cli.common import run_script
from cardiac_dreamer.synthetic import DEFAULT_VERSION, TRAJECTORIES, VERSIONS, generate_phantom


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("output_dir")
    parser.add_argument("--pairs", type=int, default=150_000, help="pairs in all (split evenly over the patients)")
    parser.add_argument("--patients", type=int, default=30)
    parser.add_argument("--image_size", type=int, default=224)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--frames_per_patient", type=int, help="distinct frames rendered per patient")
    parser.add_argument("--phantom", choices=VERSIONS, default=DEFAULT_VERSION, help="phantom version")
    parser.add_argument("--trajectory", choices=TRAJECTORIES, help="how the probe moves (default: the version's)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    extra = {} if args.frames_per_patient is None else {"frames_per_patient": args.frames_per_patient}
    started = time.perf_counter()
    folders = generate_phantom(args.output_dir, num_patients=args.patients,
                               pairs_per_patient=math.ceil(args.pairs / args.patients), image_size=args.image_size,
                               seed=args.seed, trajectory=args.trajectory, version=args.phantom, **extra)
    seconds = time.perf_counter() - started
    images = [path for folder in folders for path in Path(folder).rglob("*.png")]
    print(json.dumps({"output_dir": str(Path(args.output_dir).resolve()), "patients": len(folders),
                      "pairs": math.ceil(args.pairs / args.patients) * len(folders), "image_files": len(images),
                      "disk_mb": sum(path.stat().st_size for path in images) / 2**20, "seconds": seconds, **extra}))
    return 0


if __name__ == "__main__":
    sys.exit(run_script(main))
