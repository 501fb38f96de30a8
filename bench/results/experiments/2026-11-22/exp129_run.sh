#!/usr/bin/env bash
# exp129: one cp.async.bulk.prefetch.L2 per page, PF_DIST pages ahead of the page being loaded,
# issued by the producer of m-block 0 (or of every m-block: pf2all), against HEAD.
set -uo pipefail
V=""
for c in "128,1,4096,0" "128,1,16384,0" "128,1,4096,1" "128,2,4096,0" "64,1,4096,0" "64,1,4096,1"; do
  IFS=, read -r h s k v <<< "$c"
  V+="b=128,s_q=$s,h_q=$h,s_k=$k,varlen=$v,causal=1,dtype=bf16 "
done
ROUNDS=${ROUNDS:-3} SIDES="base:exp/base pf1:exp/pf:-DFLASH_MLA_PF_DIST=1 pf2:exp/pf:-DFLASH_MLA_PF_DIST=2 pf3:exp/pf:-DFLASH_MLA_PF_DIST=3 pf2all:exp/pf:-DFLASH_MLA_PF_DIST=2,-DFLASH_MLA_PF_ALL" \
  EXP_CASES="$V" DEADLINE=${DEADLINE:-420} bash bench/results/experiments/2026-11-22/ab_run.sh
cuobjdump --dump-sass $(find build-ab/pf2 -name "libflash_mla*" | head -1) 2>/dev/null | grep -ciE "UBLKPF|BLKPF" | sed 's/^/prefetch instructions in SASS: /'
