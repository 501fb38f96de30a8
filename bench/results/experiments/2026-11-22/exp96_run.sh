#!/usr/bin/env bash
# exp96 (H200): HEAD (chain schedule, d8bf4a5) against 8a0d4a8 (before it, in exp/head): build both, A/B bench, 4 rounds rotating.
# Derived from exp94_run.sh: the same build and A/B loop, without tests and sanitizers; other cases, 4 rounds.
# The table: ab_table.py (factored out after this ran; the same output).
set -uo pipefail
T0=$SECONDS
OUT=${OUT:-/tmp/out94}; mkdir -p "$OUT"
J=$(nproc)
CUT=-DFLASH_MLA_CUTLASS_INCLUDE_DIR=$PWD/.deps/cutlass/include
build() { cmake -S "$1" -B "$2" -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES=90a-real $CUT >"$OUT/cfg_$3.log" 2>&1 && cmake --build "$2" -j $J >"$OUT/build_$3.log" 2>&1; }
build exp/head build-ab/b head & pid=$!
build . build-ab/n new || { tail -40 "$OUT/build_new.log"; exit 1; }
wait $pid || { tail -40 "$OUT/build_head.log"; exit 1; }
echo "built at $((SECONDS-T0)) s"
grep -A3 'metadata_kernel' "$OUT/build_new.log" | head -5
CASES=(
 b=128,h_q=64,s_k=4096,varlen=1 b=128,h_q=64,s_k=8192,varlen=1 b=128,h_q=64,s_k=16384,varlen=1 b=128,h_q=32,s_q=2,s_k=4096,varlen=1
 b=128,h_q=128,s_k=4096,varlen=1 b=128,h_q=64,s_q=2,causal=1,s_k=4096,varlen=1 b=128,h_q=128,s_k=8192,varlen=1
 b=128,h_q=128,s_q=2,causal=1,s_k=4096,varlen=1 b=128,h_q=128,s_q=2,causal=1,s_k=8192,varlen=1
 b=256,h_q=128,s_k=4096,varlen=1 b=384,h_q=64,s_k=4096,varlen=1
 b=128,h_q=64,s_k=4096,varlen=0 b=128,h_q=16,s_k=4096,varlen=1 b=128,h_q=16,s_k=4096,varlen=0
)
ARGS=(--no-ceilings --kernel auto)
for c in "${CASES[@]}"; do ARGS+=(--case "$c"); done
for r in 1 2 3 4; do
  if [ $((r % 2)) -eq 1 ]; then order="b n"; else order="n b"; fi
  for side in $order; do
    [ $((SECONDS-T0)) -gt 540 ] && { echo "deadline before round $r"; break 2; }
    timeout 120 build-ab/$side/bench/flash_mla_bench "${ARGS[@]}" --json "$OUT/ab_${side}_$r.json" > "$OUT/ab_${side}_$r.txt" 2>&1 || echo "bench $side $r rc=$?"
  done
done
echo "bench done at $((SECONDS-T0)) s"
python3 "$(dirname "$0")/ab_table.py" "$OUT" --meta b:head n:new
