#!/usr/bin/env bash
# One-call device check (issue 8): the determinism matrix on the device and the `htsrl bench` table
# (raw ceiling, lock-step, HTS, and SB3 when importable) for Breakout A2C and PPO with 16 envs.
# Installs nothing from the network: wheels the machine lacks travel in .whl/ (see
# benchmarks/fetch_device_wheels.sh). Results go under $OUT (default ./device_check_out).
# Without a GPU it runs on CPU; DEVICE_CHECK_TINY=1 is the seconds-long version CI runs.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-device_check_out}
source benchmarks/device_env.sh  # PY, the wheels, PYTHONPATH; makes $OUT
exec "$PY" benchmarks/device_check.py --out "$OUT" ${DEVICE_CHECK_TINY:+--tiny}
