#!/usr/bin/env bash
# The GPU check of issue 16, ready to run on a machine with one CUDA GPU (from any folder):
#   bash bench/gpu/run.sh                 # --device cuda, full sizes, under 8 minutes on one H200
#   bash bench/gpu/run.sh --sections clip # extra arguments go to bench/gpu/run.py (see its --help)
# Results: $OUT/gpu_cuda.{json,md} and $OUT/gpu_run.log when $OUT is set, else bench/results/gpu_cuda.{json,md}.
# Needs python3 with torch, numpy, pyarrow, PyYAML and tqdm; open_clip comes from bench/gpu/wheels.
set -uo pipefail
cd "$(dirname "$0")/../.."
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
PY=${PYTHON:-python3}
if [ -n "${OUT:-}" ]; then
    mkdir -p "$OUT"
    "$PY" bench/gpu/run.py --device cuda "$@" 2>&1 | tee "$OUT/gpu_run.log"
    exit "${PIPESTATUS[0]}"
fi
exec "$PY" bench/gpu/run.py --device cuda "$@"
