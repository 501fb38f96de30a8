#!/usr/bin/env bash
# exp100 (H100): (1) compute-sanitizer on HEAD a2b9e02 (the wide kernel's bulk-copy epilogue) with
# scripts/gpu_check.sh STEPS=build,sanitize; (2) the narrow kernel's upper bound of its epilogue
# stores: HEAD against a build with FLASH_MLA_DIAG_NO_STORES (narrow_epilogue.cuh skips them; wrong
# results on purpose), 3 rounds rotating, 16-row cases and one 64-row control.
# Derived from exp97_run.sh and exp98_run.sh (the A/B loop and table).
# The table: ab_table.py (factored out after this ran; the same output).
set -uo pipefail
T0=$SECONDS
OUT=${OUT:-/tmp/out100}; mkdir -p "$OUT"
CUT=-DFLASH_MLA_CUTLASS_INCLUDE_DIR=$PWD/.deps/cutlass/include
(cmake -S . -B build-ab/nost -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES=90a-real $CUT \
   "-DCMAKE_CUDA_FLAGS=-DFLASH_MLA_DIAG_NO_STORES" >"$OUT/cfg_nost.log" 2>&1 &&
 cmake --build build-ab/nost -j 6 --target flash_mla_bench >"$OUT/build_nost.log" 2>&1) & pid=$!
STEPS=build,sanitize ARCHS=90a-real DEADLINE=330 bash scripts/gpu_check.sh > "$OUT/check.log" 2>&1
tail -12 "$OUT/check.log"
wait $pid || { tail -20 "$OUT/build_nost.log"; exit 1; }
echo "check + build at $((SECONDS-T0)) s"
ARGS=(--no-ceilings --kernel auto)
for c in b=128,h_q=16,s_k=4096,varlen=1 b=128,h_q=16,s_k=4096,varlen=0 b=128,h_q=16,s_k=16384,varlen=1 \
         b=32,h_q=16,s_k=8192,varlen=1 b=128,h_q=64,s_k=4096,varlen=1; do ARGS+=(--case "$c"); done
for r in 1 2 3; do
  if [ $((r % 2)) -eq 1 ]; then order="build-gpu build-ab/nost"; else order="build-ab/nost build-gpu"; fi
  for d in $order; do
    [ $((SECONDS-T0)) -gt 560 ] && { echo "deadline before round $r"; break 2; }
    s=$(basename $d)
    timeout 90 $d/bench/flash_mla_bench "${ARGS[@]}" --json "$OUT/ab_${s}_$r.json" > "$OUT/ab_${s}_$r.txt" 2>&1
  done
done
python3 "$(dirname "$0")/ab_table.py" "$OUT" build-gpu:head nost
