#!/usr/bin/env bash
# The GPU check (tracker issue 15), one script for a lent GPU: the tests marked `gpu` on the
# device, then ppgen against the raw library on the device and the CPU -> device speedup
# (benchmarks/bench_gpu.py; about 5 minutes on a recent NVIDIA GPU with the default steps).
#
#   bash benchmarks/gpu.sh            # cuda
#   bash benchmarks/gpu.sh cuda:1
#   STEPS=40 bash benchmarks/gpu.sh cpu   # on the CPU (the suite runs bench_gpu --quick there)
set -euo pipefail
cd "$(dirname "$0")/.."
DEVICE="${1:-cuda}"
PY="${PYTHON:-python}"
"$PY" -m pytest -q -p no:cacheprovider --device "$DEVICE" -m gpu tests
"$PY" -m benchmarks.bench_gpu --device "$DEVICE" --steps "${STEPS:-1000}"
