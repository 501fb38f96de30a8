#!/usr/bin/env bash
# exp133 (diagnostic): where a chain fill's time goes. exp/step = HEAD + exp133_step_clock.diff:
# clock64 around each take of the sorted-entry picker (the closing read waits for the pages
# read) and around the whole fill, printed by candidates 0 and 8 for the first calls.
set -uo pipefail
CUT=-DFLASH_MLA_CUTLASS_INCLUDE_DIR=$PWD/.deps/cutlass/include
cmake -S exp/step -B build-step -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES=90a-real $CUT > /dev/null &&
  cmake --build build-step -j 16 --target flash_mla_bench > /dev/null || exit 1
for c in "b=128,s_q=1,h_q=64,s_k=4096,varlen=1,causal=1,dtype=bf16" \
         "b=128,s_q=1,h_q=128,s_k=4096,varlen=1,causal=1,dtype=bf16" \
         "b=511,s_q=1,h_q=64,s_k=4096,varlen=1,causal=1,dtype=bf16"; do
  echo "== $c"
  build-step/bench/flash_mla_bench --no-ceilings --kernel auto --reps 5 --case "$c" 2>&1 |
    grep -E "exp133|^auto" | head -7
done
