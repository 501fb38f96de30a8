#!/usr/bin/env bash
# exp111: one traced launch of the wide kernel per case (exp111_trace.diff applied to the working
# tree, built with -DFLASH_MLA_DIAG_TRACE; launch 40 is stamped, launch 41 prints the stamps), then
# exp111_trace.py's summary of each. One bench process per case, so the launch count starts at 0.
set -uo pipefail
OUT=${OUT:-/tmp/out111}; mkdir -p "$OUT"
CUT=-DFLASH_MLA_CUTLASS_INCLUDE_DIR=$PWD/.deps/cutlass/include
cmake -S . -B build-ab/trace -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES=90a-real $CUT \
  "-DCMAKE_CUDA_FLAGS=-DFLASH_MLA_DIAG_TRACE" > "$OUT/cfg.log" 2>&1 &&
  cmake --build build-ab/trace -j $(nproc) --target flash_mla_bench > "$OUT/build.log" 2>&1 || { tail -30 "$OUT/build.log"; exit 1; }
i=0
for c in ${EXP_CASES:?}; do
  i=$((i + 1))
  timeout 120 build-ab/trace/bench/flash_mla_bench --no-ceilings --kernel hopper --case "$c" --reps 50 --warmup 10 > "$OUT/trace_$i.txt" 2>&1
  grep -E "^(auto|hopper) " "$OUT/trace_$i.txt" | head -1
  python3 "$(dirname "$0")/exp111_trace.py" "$OUT/trace_$i.txt" "$c"
done
