#!/usr/bin/env bash
# Builds the library and runs the main job: the verified benchmark sweep on the local GPU
# (results to bench/results/<gpu>.json). Without a GPU the benchmark says so plainly and runs
# the CPU reference check instead. Usage: scripts/run.sh [benchmark flags]  (default: --sweep)
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD="${BUILD:-build}"
GEN=()
command -v ninja >/dev/null && GEN=(-G Ninja)
cmake -S . -B "$BUILD" "${GEN[@]}" -DCMAKE_BUILD_TYPE=Release \
      ${ARCHS:+-DCMAKE_CUDA_ARCHITECTURES="$ARCHS"}
cmake --build "$BUILD" -j "${JOBS:-$(nproc)}" --target flash_mla_bench
if [ "$#" -eq 0 ]; then set -- --sweep; fi
exec "$BUILD/bench/flash_mla_bench" "$@"
