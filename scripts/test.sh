#!/usr/bin/env bash
# Builds everything and runs every test. GPU tests skip, with the reason printed, when no CUDA
# GPU is present. Usage: scripts/test.sh [build-dir]   (env: ARCHS, JOBS)
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD="${1:-build}"
GEN=()
command -v ninja >/dev/null && GEN=(-G Ninja)
cmake -S . -B "$BUILD" "${GEN[@]}" -DCMAKE_BUILD_TYPE=Release \
      ${ARCHS:+-DCMAKE_CUDA_ARCHITECTURES="$ARCHS"}
cmake --build "$BUILD" -j "${JOBS:-$(nproc)}"
ctest --test-dir "$BUILD" --output-on-failure -j "${JOBS:-$(nproc)}"
