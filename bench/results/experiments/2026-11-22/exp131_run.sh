#!/usr/bin/env bash
# exp131: the metadata kernel's group picker (chain.h) against HEAD: metadata µs where the chain
# schedule applies, decode time unchanged (the same records), GPU tests and sanitizers on the
# metadata and chain tests.
set -uo pipefail
V=""
for c in "64,1,4096,1,128" "64,1,8192,1,128" "64,1,16384,1,128" "64,1,32768,1,128" \
         "128,1,4096,1,128" "128,1,32768,1,128" "128,2,4096,1,128" "128,2,16384,1,128" \
         "128,2,32768,1,128" "64,1,4096,1,511" "128,1,4096,1,256" "16,1,4096,1,128"; do
  IFS=, read -r h s k v b <<< "$c"
  V+="b=$b,s_q=$s,h_q=$h,s_k=$k,varlen=$v,causal=1,dtype=bf16 "
done
ROUNDS=${ROUNDS:-3} TESTS=${TESTS:-1} TEST_TIMEOUT=${TEST_TIMEOUT:-150} META=1 \
  SAN_FILTER=${SAN_FILTER-'MetadataGpu.*:*chain_b100*:*chain_b60*'} \
  SIDES="base:exp/base gp:exp/gp" EXP_CASES="$V" DEADLINE=${DEADLINE:-540} \
  bash bench/results/experiments/2026-11-22/ab_run.sh
