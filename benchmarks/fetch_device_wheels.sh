#!/usr/bin/env bash
# Download, here, the wheels the GPU machines lack (they reach no package registry; Python 3.12 there).
# They travel in .whl/ (git-ignored) and device_check.sh installs them with --no-index.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p .whl
plat="--platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64"
for pkg in "gymnasium==1.4.0" "ale-py==0.12.1" "farama-notifications==0.0.6" "stable-baselines3==2.9.2"; do
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp $plat -d .whl "$pkg"
done
ls -la .whl
