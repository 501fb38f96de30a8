#!/usr/bin/env bash
# exp97: upper bounds of the wide kernel's segment costs. One tree, four builds that differ only in
# diagnostic macros (results are wrong on purpose in the three variants; timing only):
#   base  HEAD as is
#   noq   FLASH_MLA_DIAG_NO_Q_RELOAD: the Q tile is loaded for a part's first segment only
#   nost  FLASH_MLA_DIAG_NO_STORES: the epilogue keeps its row-sum exchange but stores nothing
#   both  the two together
# Then an A/B bench, 3 rounds, rotating order. The gain of each variant against base bounds what
# hiding that cost could give. EXP_CASES (space-separated --case values) replaces the case list
# (added for exp103; exp97 ran with the default list).
# Derived from exp96_run.sh (the build and the A/B loop), with four builds of one tree.
# The table: ab_table.py (factored out after this ran; the same output).
set -uo pipefail
T0=$SECONDS
OUT=${OUT:-/tmp/out97}; mkdir -p "$OUT"
J=$(nproc)
CUT=-DFLASH_MLA_CUTLASS_INCLUDE_DIR=$PWD/.deps/cutlass/include
build() {  # name, extra nvcc flags
  cmake -S . -B build-ab/$1 -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES=90a-real $CUT \
    "-DCMAKE_CUDA_FLAGS=$2" >"$OUT/cfg_$1.log" 2>&1 &&
  cmake --build build-ab/$1 -j $((J / 2)) --target flash_mla_bench >"$OUT/build_$1.log" 2>&1
}
build base "" & p1=$!
build noq "-DFLASH_MLA_DIAG_NO_Q_RELOAD" & p2=$!
wait $p1 || { tail -30 "$OUT/build_base.log"; exit 1; }
wait $p2 || { tail -30 "$OUT/build_noq.log"; exit 1; }
build nost "-DFLASH_MLA_DIAG_NO_STORES" & p3=$!
build both "-DFLASH_MLA_DIAG_NO_Q_RELOAD -DFLASH_MLA_DIAG_NO_STORES" & p4=$!
wait $p3 || { tail -30 "$OUT/build_nost.log"; exit 1; }
wait $p4 || { tail -30 "$OUT/build_both.log"; exit 1; }
echo "built at $((SECONDS-T0)) s"
CASES=(${EXP_CASES:-
 b=128,h_q=64,s_k=4096,varlen=1 b=128,h_q=64,s_k=4096,varlen=0 b=128,h_q=64,s_k=16384,varlen=1
 b=128,h_q=128,s_k=4096,varlen=1 b=128,h_q=128,s_k=4096,varlen=0
 b=128,h_q=128,s_q=2,causal=1,s_k=4096,varlen=1 b=128,h_q=128,s_q=2,causal=1,s_k=4096,varlen=0
 b=128,h_q=128,s_q=2,causal=1,s_k=16384,varlen=0
})
ARGS=(--no-ceilings --kernel hopper)
for c in "${CASES[@]}"; do ARGS+=(--case "$c"); done
SIDES=(base noq nost both)
for r in 1 2 3; do
  for k in 0 1 2 3; do
    side=${SIDES[$(((k + r) % 4))]}
    [ $((SECONDS-T0)) -gt ${DEADLINE:-540} ] && { echo "deadline before round $r"; break 2; }
    timeout 120 build-ab/$side/bench/flash_mla_bench "${ARGS[@]}" --json "$OUT/ab_${side}_$r.json" > "$OUT/ab_${side}_$r.txt" 2>&1 || echo "bench $side $r rc=$?"
  done
done
echo "bench done at $((SECONDS-T0)) s"
python3 "$(dirname "$0")/ab_table.py" "$OUT" base noq nost both
