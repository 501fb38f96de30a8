#!/usr/bin/env bash
# exp127: the KV L2 promotion by launch, 128B with one reader per page (narrow kernel, wide kernel
# with one m-block), 256B with co-readers (rule), against 256B everywhere (base = 8d002cf).
set -uo pipefail
V=""
for c in "16,1,4096,1" "16,1,8192,1" "16,1,32768,1" "16,1,4096,0" "16,1,16384,0" "16,2,4096,1" "16,2,8192,0" \
         "64,1,4096,1" "64,1,8192,1" "64,1,4096,0" "32,2,16384,1" "64,1,32768,0" \
         "128,1,4096,1" "128,1,8192,0" "64,2,4096,0" "128,2,4096,1"; do
  IFS=, read -r h s k v <<< "$c"
  V+="b=128,s_q=$s,h_q=$h,s_k=$k,varlen=$v,causal=1,dtype=bf16 "
done
V+="b=128,s_q=1,h_q=16,s_k=4096,varlen=1,causal=1,dtype=fp16 b=1,s_q=1,h_q=16,s_k=131072,varlen=0,causal=1,dtype=bf16 b=1,s_q=1,h_q=16,s_k=1024,varlen=0,causal=1,dtype=bf16 b=32,s_q=1,h_q=16,s_k=1024,varlen=2,causal=1,dtype=bf16"
ROUNDS=${ROUNDS:-5} SIDES="base:exp/base rule:exp/rule" EXP_CASES="$V" DEADLINE=${DEADLINE:-420} \
  bash bench/results/experiments/2026-11-22/ab_run.sh
