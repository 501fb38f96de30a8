#!/usr/bin/env bash
# exp130: odd m-blocks take each pair's pages in the other order (pair_page), so that with
# co-readers every page B is requested one stage release earlier by the neighbouring CTA.
set -uo pipefail
V=""
for c in "128,1,4096,0" "128,1,8192,0" "128,1,16384,0" "128,1,4096,1" "128,1,8192,1" "64,2,4096,0" \
         "128,2,4096,0" "128,2,4096,1" "128,2,16384,0" "64,1,4096,0" "64,1,4096,1"; do
  IFS=, read -r h s k v <<< "$c"
  V+="b=128,s_q=$s,h_q=$h,s_k=$k,varlen=$v,causal=1,dtype=bf16 "
done
V+="b=128,s_q=1,h_q=128,s_k=4096,varlen=1,causal=1,dtype=fp16 b=8,s_q=1,h_q=128,s_k=2048,varlen=0,causal=1,dtype=bf16"
ROUNDS=${ROUNDS:-5} TESTS=${TESTS:-1} TEST_TIMEOUT=${TEST_TIMEOUT:-150} \
  SAN_FILTER=${SAN_FILTER-'*M128*:*M256*:*M65_*:*sq2_causal*:*chain_b60*:*page_edge*:Seeded/DecodeFuzz.*/?'} \
  SIDES="base:exp/base sw:exp/sw" EXP_CASES="$V" DEADLINE=${DEADLINE:-540} \
  bash bench/results/experiments/2026-11-22/ab_run.sh
