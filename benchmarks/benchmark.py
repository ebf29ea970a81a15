"""Training throughput and memory for a config: one JSON line per precision.

    python benchmarks/benchmark.py --config production --batch_size 16 --steps 5 --warmup 2 --precision 32,16

Takes every ``cardiac-train`` flag (``--config``, ``--batch_size``, ``--d_model``, ``--set KEY=VALUE``...); without
data at ``data.data_dir`` a synthetic phantom is used. ``--precision`` may list several values, measured in turn.
"""
from __future__ import annotations

import json
import sys

import torch

from cardiac_dreamer.throughput import run_benchmark
from cardiac_dreamer.cli.common import configure_logging, report_error
from cardiac_dreamer.cli.train_command import build_parser, resolve_config
from cardiac_dreamer.config import apply_overrides
from cardiac_dreamer.errors import CardiacDreamerError


def main(argv=None) -> int:
    parser = build_parser()
    parser.prog = "benchmarks/benchmark.py"
    parser.add_argument("--steps", type=int, default=10, help="measured training steps (after warm-up)")
    parser.add_argument("--warmup", type=int, default=2, help="steps run first and not measured")
    parser.add_argument("--rounds", type=int, default=2, help="Trainer/bare-loop alternations for the overhead")
    parser.add_argument("--threads", type=int, help="torch.set_num_threads (default: torch's choice)")
    parser.add_argument("--peak_tflops", type=float, help="device peak for the MFU (known GPUs are built in)")
    args = parser.parse_args(argv)
    configure_logging()
    if args.threads:
        torch.set_num_threads(args.threads)
    precisions = (args.precision or "").split(",")
    args.precision = None
    try:
        config = resolve_config(args)
        for precision in precisions:
            run_config = apply_overrides(config, {"training.precision": precision or None})
            result = run_benchmark(run_config, steps=args.steps, warmup=args.warmup, rounds=args.rounds,
                                   peak_tflops=args.peak_tflops)
            print(json.dumps(result), flush=True)
    except CardiacDreamerError as error:
        return report_error(error)
    return 0


if __name__ == "__main__":
    sys.exit(main())
