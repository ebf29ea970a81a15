"""Training throughput and memory for a config: one JSON line per precision; or the data loader alone.

    python benchmarks/benchmark.py --config production --batch_size 16 --steps 5 --warmup 2 --precision 32,16
    python benchmarks/benchmark.py --config production --batch_size 16 --steps 3 --warmup 1 --rounds 1 \\
        --precision 32 --set training.activation_checkpointing=true
    python benchmarks/benchmark.py --data_only --data_dir DATA --stores decode,disk --workers 0,2,4 --batches 100

Takes every ``cardiac-train`` flag (``--config``, ``--batch_size``, ``--d_model``, ``--set KEY=VALUE``...); without
data at ``data.data_dir`` a synthetic phantom is used. ``--precision`` may list several values, measured in turn, each
with its own peak RSS. ``--data_only`` measures the DataLoader alone: one line per (image store, worker count).
"""
from __future__ import annotations

import json
import sys

import cardiac_dreamer.cli  # noqa: F401  (first: it sets the CPU thread policy before torch loads)
import torch

from cardiac_dreamer.cli.common import configure_logging, report_error
from cardiac_dreamer.cli.train_command import build_parser, resolve_config
from cardiac_dreamer.config import apply_overrides
from cardiac_dreamer.errors import CardiacDreamerError
from cardiac_dreamer.benchmarking.loader_throughput import measure_loader
from cardiac_dreamer.benchmarking.throughput import run_benchmark


def main(argv=None) -> int:
    parser = build_parser()
    parser.prog = "benchmarks/benchmark.py"
    parser.description = __doc__.split("\n\n")[0]
    parser.add_argument("--steps", type=int, default=10, help="measured training steps (after warm-up)")
    parser.add_argument("--warmup", type=int, default=2, help="steps run first and not measured")
    parser.add_argument("--rounds", type=int, default=2, help="Trainer/bare-loop alternations for the overhead")
    parser.add_argument("--threads", type=int, help="torch.set_num_threads (default: the thread policy's choice)")
    parser.add_argument("--peak_tflops", type=float, help="device peak for the MFU (known GPUs are built in)")
    parser.add_argument("--stores", default="decode,disk",
                        help="with --data_only: image stores to measure, among memory, disk, decode")
    parser.add_argument("--workers", default="0,2,4", help="with --data_only: loader worker counts")
    parser.add_argument("--batches", type=int, default=None,
                        help="with --data_only: measured batches per line (default: 50, or all the data holds)")
    args = parser.parse_args(argv)
    configure_logging()
    if args.threads:
        torch.set_num_threads(args.threads)
    precisions = (args.precision or "").split(",")
    args.precision = None
    try:
        config = resolve_config(args)
        if args.data_only:
            results = measure_loader(config, stores=args.stores.split(","),
                                     workers=[int(count) for count in args.workers.split(",")], batches=args.batches)
        else:
            results = (run_benchmark(apply_overrides(config, {"training.precision": precision} if precision else {}),
                                     steps=args.steps, warmup=args.warmup, rounds=args.rounds,
                                     peak_tflops=args.peak_tflops) for precision in precisions)
        for result in results:
            print(json.dumps(result), flush=True)
    except CardiacDreamerError as error:
        return report_error(error)
    return 0


if __name__ == "__main__":
    sys.exit(main())
