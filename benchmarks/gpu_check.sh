#!/usr/bin/env bash
# The GPU check (see benchmarks/gpu_check.py): production config, bf16 and fp16, batch 16 and the largest that fits,
# eager and compiled, one JSON line per run on stdout, over in 5 minutes whatever happens.
#   bash benchmarks/gpu_check.sh | tee gpu_check.jsonl          # extra flags go to gpu_check.py
# Needs the package installed (pip install -e .) and a CUDA GPU; no data and no internet (synthetic phantom).
set -euo pipefail
cd "$(dirname "$0")/.."
# the script's own budget (270 s) ends it first; timeout is the backstop for a hung run
exec timeout --signal=INT --kill-after=15 300 "${PYTHON:-python}" benchmarks/gpu_check.py "$@"
