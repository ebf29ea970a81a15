#!/usr/bin/env bash
# Peak RSS of production fp32 training at batch 16, four ways: glibc's own heap or the heap policy
# (cardiac_dreamer/runtime/heap.py), each without and with training.activation_checkpointing. One JSON line each;
# compare peak_rss_mb and step_time_median_s. Run on an idle machine. The default spatial tokens peak at ~2.7 GB
# (4.4 s a step); the goal of under 5.6 GB and the policy were set with channel tokens (6.9 GB, 22-26 s a step,
# about 15 minutes for the four lines on 2 cores): add --set model.token_type=channel to measure those.
#   bash benchmarks/memory.sh [extra benchmark.py flags]
set -euo pipefail
cd "$(dirname "$0")/.."
for heap in off mmap; do
  for checkpointing in false true; do
    CARDIAC_DREAMER_HEAP_POLICY=$heap "${PYTHON:-python}" benchmarks/benchmark.py --config production \
      --batch_size 16 --precision 32 --steps 3 --warmup 1 --rounds 1 \
      --set training.activation_checkpointing=$checkpointing "$@" \
      | sed "s/^{/{\"heap_policy\": \"$heap\", /"
  done
done
