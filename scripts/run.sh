#!/usr/bin/env bash
# Builds the library and runs the main job: the verified benchmark sweep on the local GPU
# (results to bench/results/<gpu>.json). Without a GPU the benchmark says so plainly and runs
# the CPU reference check instead. Usage: scripts/run.sh [benchmark flags]
# (default: --sweep --extra --kernel all --json bench/results/<gpu>.json)
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD="${BUILD:-build}"
GEN=()
command -v ninja >/dev/null && GEN=(-G Ninja)
cmake -S . -B "$BUILD" "${GEN[@]}" -DCMAKE_BUILD_TYPE=Release \
      ${ARCHS:+-DCMAKE_CUDA_ARCHITECTURES="$ARCHS"}
cmake --build "$BUILD" -j "${JOBS:-$(nproc)}" --target flash_mla_bench
if [ "$#" -eq 0 ]; then
  # The standard sweep plus FlashMLA's weak spots, every kernel, JSON named by the GPU.
  gpu=$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -n1 || true)
  slug=$(echo "${gpu:-local}" | tr '[:upper:]' '[:lower:]' | sed -E 's/[^a-z0-9]+/-/g; s/^-+//; s/-+$//')
  mkdir -p bench/results
  set -- --sweep --extra --kernel all --json "bench/results/${slug:-local}.json"
fi
exec "$BUILD/bench/flash_mla_bench" "$@"
