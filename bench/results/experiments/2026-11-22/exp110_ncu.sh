#!/usr/bin/env bash
# exp110 ncu: stall reasons of HEAD against the exp110 build, 128 rows fixed and 256 rows variable
# (s_k 4096, b = 128), two rounds. Run from the repository root on the device, OUT set.
set -uo pipefail
CUT=-DFLASH_MLA_CUTLASS_INCLUDE_DIR=$PWD/.deps/cutlass/include
# exp/head: git archive of HEAD; exp/qt: the same with exp110_q_prefetch_timed.diff applied
for s in head qt; do (cmake -S exp/$s -B build-ab/$s -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES=90a-real $CUT > /dev/null && cmake --build build-ab/$s -j 8 --target flash_mla_bench > $OUT/build_$s.log 2>&1) & done; wait
M=smsp__average_warps_issue_stalled_no_instruction_per_issue_active.ratio,smsp__average_warps_issue_stalled_long_scoreboard_per_issue_active.ratio,smsp__average_warps_issue_stalled_wait_per_issue_active.ratio,smsp__average_warps_issue_stalled_barrier_per_issue_active.ratio,smsp__average_warp_latency_per_inst_issued.ratio,gpu__time_duration.sum,smsp__inst_executed.sum
for r in 1 2; do for s in head qt; do for c in b=128,h_q=128,s_k=4096,varlen=0 b=128,h_q=128,s_q=2,s_k=4096,varlen=1; do
  echo "== $s r$r $c"
  timeout 120 ncu --clock-control none --cache-control none --launch-skip 5 --launch-count 1 -k regex:hopper_decode --metrics $M build-ab/$s/bench/flash_mla_bench --no-ceilings --kernel auto --case $c --reps 3 --warmup 3 2>&1 | grep -E "^\s+(smsp|gpu)__" | awk '{print $1, $NF}'
done; done; done
