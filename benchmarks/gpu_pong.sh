#!/usr/bin/env bash
# Issue 35 item 6, the GPU point beside the CPU curve: Pong-v5 with htsrl's defaults, the learner on the GPU,
# 16 envs, for a fixed wall time (GPU_PONG_SECONDS, default 420: the run stops at a barrier, resumable);
# writes gpu_pong.json, the curve CSV and config under $OUT (default ./gpu_pong_out). One device call:
#   bash benchmarks/fetch_device_wheels.sh            # here, once: the wheels the GPU machine lacks
#   run(command="OUT=$OUT bash benchmarks/gpu_pong.sh", carry=[".whl"], timeout_s=600)
# Without a GPU it runs on CPU (tests/test_device_check.py bounds it with GPU_PONG_STOP_AT_STEPS=4096).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-gpu_pong_out}
source benchmarks/device_env.sh  # PY, the wheels, PYTHONPATH; makes $OUT
exec "$PY" benchmarks/gpu_pong.py --out "$OUT" --seconds "${GPU_PONG_SECONDS:-420}" \
  ${GPU_PONG_STOP_AT_STEPS:+--stop-at-steps "$GPU_PONG_STOP_AT_STEPS"}
