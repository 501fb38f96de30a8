#!/usr/bin/env bash
# exp98: the wide kernel's output staged over the Q tile and written by bulk copies (working tree)
# against HEAD (exp/head, from `git archive`). Builds both, runs the GPU tests on the new build
# (kAuto, hopper, and the wide kernel for every M), then an A/B bench, rotating order.
# Derived from exp96_run.sh (same A/B loop and table).
# The table: ab_table.py (factored out after this ran; the same output).
set -uo pipefail
T0=$SECONDS
OUT=${OUT:-/tmp/out98}; mkdir -p "$OUT"
J=$(nproc)
CUT=-DFLASH_MLA_CUTLASS_INCLUDE_DIR=$PWD/.deps/cutlass/include
build() { cmake -S "$1" -B "$2" -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES=90a-real $CUT >"$OUT/cfg_$3.log" 2>&1 && cmake --build "$2" -j $((J / 2)) $4 >"$OUT/build_$3.log" 2>&1; }
build exp/head build-ab/b head "--target flash_mla_bench" & pid=$!
build . build-ab/n new "" || { tail -40 "$OUT/build_new.log"; exit 1; }
wait $pid || { tail -40 "$OUT/build_head.log"; exit 1; }
echo "built at $((SECONDS-T0)) s"
T=build-ab/n/tests/flash_mla_gpu_tests
for k in auto hopper hopper-wide; do
  kern=${k%-wide}; narrow=1; [ "$k" = hopper-wide ] && narrow=0
  FLASH_MLA_KERNEL=$kern FLASH_MLA_HOPPER_NARROW=$narrow timeout 200 $T --gtest_brief=1 > "$OUT/gtest_$k.txt" 2>&1
  echo "gpu tests $k: rc=$? $(grep -E '^\[  PASSED|FAILED TEST' "$OUT/gtest_$k.txt" | head -3 | tr '\n' ' ')"
done
echo "tests done at $((SECONDS-T0)) s"
CASES=(${EXP_CASES:-
 b=128,h_q=64,s_k=4096,varlen=1 b=128,h_q=64,s_k=4096,varlen=0 b=128,h_q=64,s_k=16384,varlen=1
 b=128,h_q=32,s_q=2,s_k=4096,varlen=1
 b=128,h_q=128,s_k=4096,varlen=1 b=128,h_q=128,s_k=4096,varlen=0 b=128,h_q=128,s_k=16384,varlen=1
 b=128,h_q=128,s_q=2,causal=1,s_k=4096,varlen=1 b=128,h_q=128,s_q=2,causal=1,s_k=4096,varlen=0
 b=128,h_q=128,s_q=2,causal=1,s_k=8192,varlen=1 b=8,h_q=64,s_q=2,s_k=2048,varlen=0 b=1,h_q=64,s_k=131072,varlen=0
 b=128,h_q=16,s_k=4096,varlen=1
})
ARGS=(--no-ceilings --kernel auto)
for c in "${CASES[@]}"; do ARGS+=(--case "$c"); done
for r in 1 2 3 4; do
  if [ $((r % 2)) -eq 1 ]; then order="b n"; else order="n b"; fi
  for side in $order; do
    [ $((SECONDS-T0)) -gt ${DEADLINE:-540} ] && { echo "deadline before round $r"; break 2; }
    timeout 120 build-ab/$side/bench/flash_mla_bench "${ARGS[@]}" --json "$OUT/ab_${side}_$r.json" > "$OUT/ab_${side}_$r.txt" 2>&1 || echo "bench $side $r rc=$?"
  done
done
echo "bench done at $((SECONDS-T0)) s"
grep -h "FAILED" "$OUT"/ab_n_*.txt | head -5
python3 "$(dirname "$0")/ab_table.py" "$OUT" b:head n:new
