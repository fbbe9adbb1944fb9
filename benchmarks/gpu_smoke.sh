#!/usr/bin/env bash
# The GPU path in at most five minutes on a machine with a CUDA GPU (benchmarks/gpu_smoke.py says what it measures).
# Uses .venv when it exists; otherwise creates it with the default (CUDA) PyTorch build. Never run by CI.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
    .venv/bin/pip install --quiet "${TORCH:-torch}"
    .venv/bin/pip install --quiet -e ".[dev,fid]"
fi
exec timeout 300 .venv/bin/python benchmarks/gpu_smoke.py "$@"
