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
# ctest does not show a skipped test's output: print the GPU tests' reason once.
gpu_tests="$BUILD/tests/flash_mla_gpu_tests"
if [ -x "$gpu_tests" ]; then
  why=$("$gpu_tests" --gtest_filter='MetadataGpu.NumSmPartsIsPositive' 2>&1 |
        grep -A1 -m1 ': Skipped$' | tail -n 1 || true)
  if [ -n "$why" ]; then echo "GPU tests: SKIPPED ($why)"; fi
fi

# Python tests (python/tests): they need PyTorch, a GPU and the installed package
# (pip install --no-build-isolation .) and skip with the reason printed when one is missing.
# pytest's exit code 5 ("no tests collected") counts as a skip, not a failure.
PYTHON="${PYTHON:-python3}"
if "$PYTHON" -c "import pytest" 2>/dev/null; then
  rc=0
  "$PYTHON" -m pytest python/tests -q -rs -p no:cacheprovider || rc=$?
  if [ "$rc" -eq 5 ]; then
    echo "python tests: none collected (pytest exit code 5), treated as skipped"
  elif [ "$rc" -ne 0 ]; then
    exit "$rc"
  fi
else
  echo "python tests: SKIPPED (pytest is not installed for $PYTHON)"
fi
