#!/usr/bin/env bash
# Every CPU figure of the performance notes, in one go, on an idle machine; JSON lines into OUT (default
# idle_measurements.jsonl). Refuses to start while the 1-minute load average is 0.5 or more (a busy 2-core machine
# made a run 5.7x slower): FORCE=1 to run anyway, and then do not report the times.
#   bash benchmarks/idle_measurements.sh DATA_150K [OUT]       # DATA_150K from benchmarks/make_phantom.py
# About 40 minutes on 2 cores: loader 5 min (plus the one-time pack build, 3 min), validation 2 min, memory a few
# minutes (15 with channel tokens), contention 25 min.
set -euo pipefail
data=$(realpath "${1:?usage: idle_measurements.sh DATA_150K [OUT]}")  # both named from where it was started
out=$(realpath "${2:-idle_measurements.jsonl}")
cd "$(dirname "$0")/.."
py=${PYTHON:-python}
load=$(cut -d' ' -f1 /proc/loadavg)
if [[ "${FORCE:-0}" != 1 ]] && awk "BEGIN {exit !($load >= 0.5)}"; then
  echo "load average $load: the machine is busy, figures would be wrong (FORCE=1 to run anyway)" >&2
  exit 1
fi
echo "{\"load_average_at_start\": $load, \"started\": \"$(date -Is)\"}" >> "$out"
$py benchmarks/validation_time.py "$data" --full_decode >> "$out"
$py benchmarks/benchmark.py --data_only --config production --data_dir "$data" --stores disk,decode \
  --workers 0,2,4 --batches 100 >> "$out"
bash benchmarks/memory.sh >> "$out"
$py benchmarks/contention.py >> "$out" || true  # above its target it exits 1; its last line says so
echo "{\"load_average_at_end\": $(cut -d' ' -f1 /proc/loadavg), \"ended\": \"$(date -Is)\"}" >> "$out"
