#!/usr/bin/env bash
# Fetch, on a machine with a package registry, the wheels depthcli needs that the GPU machine's
# image lacks (PyAV, OpenEXR), for its Python 3.12 on x86-64, into .whl/ (git-ignored), so that
# scripts/gpu_check.sh can install them there offline.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p .whl
for pkg in "av>=14" "openexr>=3.3"; do
    python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
        -d .whl "$pkg"
done
ls -l .whl
