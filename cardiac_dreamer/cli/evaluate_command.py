"""``cardiac-evaluate``: score a checkpoint on a patient split it recorded and write the report.

Flags in, :func:`~cardiac_dreamer.evaluation.evaluate_checkpoint` called, a table out. A library error becomes one
``error: ...`` line on stderr and exit code 2, never a traceback.
"""
from __future__ import annotations

import argparse
import sys
from typing import List, Optional, Sequence

from ..errors import CardiacDreamerError
from ..evaluation.evaluator import SPLIT_CHOICES, evaluate_checkpoint
from .common import configure_logging, report_error


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cardiac-evaluate",
        description="Evaluate a cardiac_dreamer checkpoint on the patient split and with the normalization "
        "statistics it recorded; writes metrics.json, predictions.csv and plots.",
    )
    parser.add_argument("--checkpoint", required=True, help="a run's .ckpt, e.g. outputs/run_X/checkpoints/best.ckpt")
    parser.add_argument("--data_dir", help="data directory (default: the one recorded in the checkpoint)")
    parser.add_argument("--split", default="test", choices=SPLIT_CHOICES, help="patients to evaluate (default: test)")
    parser.add_argument("--patients", type=_patient_list, help="comma-separated patient ids of the split, e.g. a,b")
    parser.add_argument(
        "--output_dir", help="where to write (default: evaluation_<split>_<timestamp>/ in the checkpoint's run)"
    )
    parser.add_argument("--batch_size", type=_positive_int, default=32, help="pairs per forward pass (default: 32)")
    parser.add_argument("--device", default="auto", help="auto (cuda, then mps, then cpu), cpu, cuda, cuda:1, ...")
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    configure_logging()
    try:
        report, output_dir = evaluate_checkpoint(
            args.checkpoint,
            split=args.split,
            data_dir=args.data_dir,
            patients=args.patients,
            output_dir=args.output_dir,
            batch_size=args.batch_size,
            device=args.device,
        )
    except CardiacDreamerError as error:
        return report_error(error)
    print(report.summary_table())
    print(f"results: {output_dir}")
    return 0


def _patient_list(value: str) -> List[str]:
    patients = [patient.strip() for patient in value.split(",") if patient.strip()]
    if not patients:
        raise argparse.ArgumentTypeError("expected comma-separated patient ids")
    return patients


def _positive_int(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value!r}") from None
    if number <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return number


if __name__ == "__main__":
    sys.exit(main())
