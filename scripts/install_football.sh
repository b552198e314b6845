#!/usr/bin/env bash
# Build Google Research Football 2.10.2 from source (about 5 minutes on 2 cores).
# Needs root for apt-get; installs into the python3 on PATH (activate your venv first).
set -euo pipefail
PY=${PYTHON:-python3}
if "$PY" -c "import gfootball.env" 2>/dev/null; then
  echo "gfootball already installed"; exit 0
fi
SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
  cmake build-essential libgl1-mesa-dev libegl-dev \
  libsdl2-dev libsdl2-image-dev libsdl2-ttf-dev libsdl2-gfx-dev \
  libboost-thread-dev libboost-system-dev libboost-filesystem-dev libboost-python-dev \
  "libpython$("$PY" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')-dev" >/dev/null
# The build script imports psutil (hence no build isolation); gfootball imports six without
# declaring it; gym 0.26 breaks its reset() (0.25.2 works); --no-deps keeps its opencv-python from
# clashing with opencv-python-headless.
"$PY" -m pip install -q psutil pygame scipy absl-py wheel six "gym==0.25.2"
"$PY" -m pip install -q --no-deps --no-build-isolation "gfootball==2.10.2"
"$PY" -c "import gfootball.env" && echo "gfootball installed"
