"""``python -m cardiac_dreamer.synthetic OUT``: write a synthetic phantom in the real export format (and, with
``--table``, compare it with a real export). What is simulated is :mod:`cardiac_dreamer.synthetic`'s docstring."""
from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Optional, Sequence

from ..errors import CardiacDreamerError
from ..phantom import DEFAULT_FRAMES_PER_PATIENT, DEFAULT_VERSION, TRAJECTORIES, VERSIONS, generate_phantom
from .common import CommandParser, a_path, add_flag, interrupted_exit_code, report_error, sigterm_as_ctrl_c

TRAJECTORY_HELP = (
    "sweep: sweeps that start far from the view and converge to it, pairs 1-4 frames apart, each pair its own two "
    "files (v4's default); random: independent pairs, the move independent of the pose (v3's default); "
    "sonographer: a walk drifting back to the view, frames shared between pairs"
)


def build_parser() -> CommandParser:
    parser = CommandParser(
        prog="python -m cardiac_dreamer.synthetic",
        description="Write a synthetic echocardiography phantom in the real export format: OUTPUT_DIR/phantom_01, "
                    "... each with ft1/, ft2/, transitions_dataset.json and phantom.json. A complete phantom with "
                    "the same settings is reused.",
    )
    parser.add_argument("output_dir", type=a_path, help="where the patient folders go (created)")
    add_flag(parser, "--phantom", choices=VERSIONS, default=DEFAULT_VERSION,
                        help="v4: sector-shaped exports, sweeps, patients that differ like people, a beating "
                             "heart; v3: the static phantom of before, for results calibrated on it "
                             "(default: %(default)s)")
    add_flag(parser, "--patients", type=int, default=6, help="patient folders to write (default: %(default)s)")
    add_flag(parser, "--pairs", type=int, default=None,
                        help="pairs per patient (default: from --frames; sweep and random pairs use 2 files each)")
    add_flag(parser, "--frames", type=int, default=None,
                        help=f"frames per patient (default: {DEFAULT_FRAMES_PER_PATIENT} when --pairs is not given)")
    add_flag(parser, "--trajectory", choices=TRAJECTORIES, default=None,
                        help=f"how the probe moves (default: the version's). {TRAJECTORY_HELP}")
    add_flag(parser, "--image_size", type=int, default=224,
                        help="side of the square images in pixels (default: %(default)s)")
    add_flag(parser, "--seed", type=int, default=0,
                        help="the same seed writes the same files (default: %(default)s)")
    add_flag(parser, "--table", action="store_true",
                        help="then print the phantom's statistics beside a real export's, and the two image "
                             "checks (leave-one-patient-out probe R2, unseen-patient error ratio), as markdown")
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    with sigterm_as_ctrl_c():
        try:
            folders = generate_phantom(args.output_dir, args.patients, args.pairs, args.image_size, args.seed,
                                       frames_per_patient=args.frames, trajectory=args.trajectory,
                                       version=args.phantom)
        except CardiacDreamerError as error:
            return report_error(error)
        except KeyboardInterrupt:
            print("interrupted; the phantom is not complete: the same command writes it again", file=sys.stderr)
            return interrupted_exit_code()
        if args.table:
            from ..phantom.checks import comparison_table

            try:
                print(comparison_table([Path(folder) for folder in folders]))
            except KeyboardInterrupt:
                print("interrupted; the phantom is complete, its table was not printed", file=sys.stderr)
                return interrupted_exit_code()
    return 0


if __name__ == "__main__":
    sys.exit(main())
