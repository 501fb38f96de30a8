#!/usr/bin/env bash
# exp128 (diagnostic): the wide kernel at HEAD with its loads taken away (NO_LOAD: the producer
# arrives without bytes, stages zeroed) or served from L2 (HOT: every page of a part is one page).
set -uo pipefail
V=""
for c in "64,1,4096" "64,1,16384" "128,1,4096" "128,1,16384" "128,2,4096" "128,2,16384"; do
  IFS=, read -r h s k <<< "$c"
  V+="b=128,s_q=$s,h_q=$h,s_k=$k,varlen=0,causal=1,dtype=bf16 "
done
ROUNDS=${ROUNDS:-3} SIDES="base:exp/base noload:exp/diag:-DFLASH_MLA_DIAG_NO_LOAD hot:exp/diag:-DFLASH_MLA_DIAG_HOT" \
  EXP_CASES="$V" DEADLINE=${DEADLINE:-300} bash bench/results/experiments/2026-11-22/ab_run.sh
for side in base noload; do
  build-ab/$side/bench/flash_mla_bench --kernel auto --case "b=128,s_q=1,h_q=128,s_k=4096,varlen=0,causal=1,dtype=bf16" \
    --case "b=128,s_q=2,h_q=128,s_k=4096,varlen=0,causal=1,dtype=bf16" > $OUT/ceil_$side.txt 2>&1
  echo "== $side with ceilings"; grep -E "ceilings|h_q=128" $OUT/ceil_$side.txt | cut -c1-230
done
