#!/usr/bin/env bash
# Install htsrl with everything its tests need, then run the whole suite (what CI runs).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
"$PY" -m pip install -q --upgrade pip
"$PY" -m pip install -q "torch==2.13.0"          # a local CPU wheel on these machines; any torch>=2.3 works
"$PY" -m pip install -q -e ".[atari,envpool,test,track]"   # track: W&B, for tests/test_wandb.py
bash scripts/install_football.sh                  # Google Research Football, built from source
export HTSRL_REQUIRE_FOOTBALL=1 HTSRL_REQUIRE_ENVPOOL=1  # football and EnvPool tests fail rather than skip
"$PY" -m ruff check .                               # lint
"$PY" -m ruff format --check .                      # formatting (ruff is pinned in the test extra)
"$PY" -m pytest -q -p no:cacheprovider --durations=15 tests "$@"
