# Sourced by the scripts that run on the GPU machine (device_check.sh, gpu_pong.sh): the wheels it lacks
# travel in .whl/ (benchmarks/fetch_device_wheels.sh) and install with --no-index; htsrl runs from the tree.
# The sourcing script sets OUT first.
PY=${PYTHON:-python3}
mkdir -p "$OUT"
if compgen -G ".whl/*.whl" >/dev/null; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/htsrl-site .whl/*.whl
  export PYTHONPATH=/tmp/htsrl-site:${PYTHONPATH:-}
fi
export PYTHONPATH=$PWD:${PYTHONPATH:-}
export PYTHONUNBUFFERED=1 OMP_WAIT_POLICY=PASSIVE
