"""A copy of a data folder whose chosen patients' pairs join frames further apart, to score a world model on moves
larger than an export's.

    python benchmarks/regapped_copy.py DATA OUT --patients phantom_06 --gap_frames 96
    cardiac-evaluate --checkpoint RUN --data_dir OUT --split test

Each chosen patient's pair keeps its t1 and takes as t2 a numbered frame of its sweep up to ``--gap_frames`` before
or after it, drawn as ``data.pair_gap_frames`` draws training pairs
(:func:`cardiac_dreamer.data.pair_gaps.regap_pairs`, seed 0, additive labels). Run on the test patients, the
evaluation's ``world_model`` section then says whether the dreamed features of t2 beat the same prediction without
the move (``dreamed_without_move``) once moves are several mm and degrees. Other patients are copied as they are;
images are hard-linked where the filesystem allows.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from pathlib import Path

import numpy as np

from cardiac_dreamer.cli.common import run_script
from cardiac_dreamer.config import name_list
from cardiac_dreamer.data.pair_gaps import regap_pairs
from cardiac_dreamer.data.records import read_records
from cardiac_dreamer.names import TRANSITIONS_FILE


def _hard_link_or_copy(source: str, target: str) -> None:
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("data_dir", type=Path)
    parser.add_argument("output_dir", type=Path, help="a new folder")
    parser.add_argument("--patients", required=True, help="comma-separated folders whose pairs are re-drawn")
    parser.add_argument("--gap_frames", type=int, default=96)
    args = parser.parse_args()
    if args.output_dir.exists():
        parser.error(f"{args.output_dir} exists; give a new folder")
    if args.output_dir.resolve().is_relative_to(args.data_dir.resolve()):
        parser.error(f"{args.output_dir} lies inside {args.data_dir}; give a folder outside the data")
    if args.gap_frames < 1:
        parser.error(f"--gap_frames must be >= 1, got {args.gap_frames}")
    folders = name_list(args.patients)
    missing = [folder for folder in folders if not (args.data_dir / folder / TRANSITIONS_FILE).is_file()]
    if missing:
        parser.error(f"{args.data_dir} holds no patient folder {', '.join(missing)}")
    shutil.copytree(args.data_dir, args.output_dir, copy_function=_hard_link_or_copy)
    for folder in folders:
        path = args.output_dir / folder / TRANSITIONS_FILE
        path.unlink()  # a hard link to the original's file: write a new one
        entries = json.loads((args.data_dir / folder / TRANSITIONS_FILE).read_text())
        pairs = regap_pairs(read_records(args.data_dir, [folder]), args.gap_frames, seed=0)
        for pair in pairs:
            entry = entries[pair.index]
            entry["ft2_image_path"], entry["frame_t2"] = pair.image_t2_rel, pair.frame_t2
            entry["at2_6dof"] = [round(value, 3) for value in pair.at2]
            entry["action_change_6dof"] = [round(value, 3) for value in pair.action_change]
        path.write_text(json.dumps(entries, indent=1))
        moves = np.array([pair.action_change for pair in pairs])
        print(f"{folder}: {len(pairs)} pairs, move std {np.round(moves.std(0), 2).tolist()} (mm, deg)")


if __name__ == "__main__":
    sys.exit(run_script(main))
