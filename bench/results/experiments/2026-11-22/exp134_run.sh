#!/usr/bin/env bash
# exp134: every lane of a candidate warp writes the fill's trace (the same values to the same
# addresses) instead of lane 0 alone, so that the fill's record stores need no divergent branch.
# Metadata µs against HEAD; GPU tests and racecheck/memcheck/synccheck on the metadata tests.
set -uo pipefail
V=""
for c in "64,1,4096,128" "64,1,16384,128" "128,1,4096,128" "128,2,4096,128" "64,1,4096,511" \
         "128,1,4096,256" "16,1,4096,128"; do
  IFS=, read -r h s k b <<< "$c"
  V+="b=$b,s_q=$s,h_q=$h,s_k=$k,varlen=1,causal=1,dtype=bf16 "
done
ROUNDS=${ROUNDS:-3} TESTS=${TESTS:-1} TEST_TIMEOUT=${TEST_TIMEOUT:-150} META=1 \
  SAN_FILTER=${SAN_FILTER-'MetadataGpu.*:*chain_b100*:*chain_b60*'} \
  SIDES="base:exp/base allrec:exp/allrec" EXP_CASES="$V" DEADLINE=${DEADLINE:-540} \
  bash bench/results/experiments/2026-11-22/ab_run.sh
