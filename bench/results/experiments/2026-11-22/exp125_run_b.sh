#!/usr/bin/env bash
# exp125, second A/B: other cells (no tests).
set -uo pipefail
V="b=128,s_q=2,h_q=16,s_k=4096,varlen=1,causal=1,dtype=bf16 b=128,s_q=2,h_q=64,s_k=4096,varlen=1,causal=1,dtype=bf16 b=128,s_q=1,h_q=128,s_k=4096,varlen=0,causal=1,dtype=bf16 b=128,s_q=2,h_q=128,s_k=4096,varlen=0,causal=1,dtype=bf16 b=128,s_q=1,h_q=128,s_k=8192,varlen=1,causal=1,dtype=bf16 b=128,s_q=1,h_q=128,s_k=4096,varlen=1,causal=1,dtype=fp16 b=128,s_q=1,h_q=64,s_k=16384,varlen=1,causal=1,dtype=bf16 b=128,s_q=1,h_q=16,s_k=4096,varlen=1,causal=1,dtype=fp16 b=32,s_q=1,h_q=16,s_k=4096,varlen=1,causal=1,dtype=bf16 b=1,s_q=1,h_q=16,s_k=1000,varlen=0,causal=1,dtype=bf16 b=128,s_q=2,h_q=32,s_k=8192,varlen=1,causal=1,dtype=bf16 b=32,s_q=1,h_q=16,s_k=1000,varlen=2,causal=1,dtype=bf16,long=65536"
ROUNDS=${ROUNDS:-6} SIDES="base:exp/base shift:exp/shift" EXP_CASES="$V" DEADLINE=${DEADLINE:-400} \
  bash bench/results/experiments/2026-11-22/ab_run.sh
