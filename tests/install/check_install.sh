#!/usr/bin/env bash
# Installs the built library into a scratch prefix and builds a consumer against it with
# find_package, then builds the consumer again with add_subdirectory of the source tree.
# Usage: check_install.sh <build-dir> <source-dir> <scratch-dir>
set -euo pipefail
build=$1 src=$2 scratch=$3
rm -rf "$scratch" && mkdir -p "$scratch"
gen=(); command -v ninja >/dev/null && gen=(-G Ninja)
cmake --install "$build" --prefix "$scratch/prefix" >/dev/null
cmake -S "$src/tests/install/consumer" -B "$scratch/find" "${gen[@]}" \
      -DCMAKE_PREFIX_PATH="$scratch/prefix" -DCMAKE_CUDA_ARCHITECTURES=80-real >/dev/null
cmake --build "$scratch/find" >/dev/null
"$scratch/find/consumer"
cmake -S "$src/tests/install/consumer" -B "$scratch/subdir" "${gen[@]}" \
      -DFLASH_MLA_SOURCE_DIR="$src" -DFLASH_MLA_BUILD_TESTS=OFF -DFLASH_MLA_BUILD_BENCH=OFF \
      -DCMAKE_CUDA_ARCHITECTURES=80-real >/dev/null
cmake --build "$scratch/subdir" >/dev/null
"$scratch/subdir/consumer"
echo "find_package and add_subdirectory consumers: ok"
