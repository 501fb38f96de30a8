#!/usr/bin/env bash
# exp125 on the H100: the cells of both H200 A/Bs that matter most (no tests; gpu_check follows).
set -uo pipefail
V="b=128,s_q=1,h_q=16,s_k=4096,varlen=1,causal=1,dtype=bf16 b=128,s_q=2,h_q=16,s_k=4096,varlen=1,causal=1,dtype=bf16 b=128,s_q=1,h_q=64,s_k=4096,varlen=1,causal=1,dtype=bf16 b=128,s_q=2,h_q=32,s_k=4096,varlen=1,causal=1,dtype=bf16 b=128,s_q=1,h_q=64,s_k=8192,varlen=1,causal=1,dtype=bf16 b=128,s_q=1,h_q=64,s_k=4096,varlen=0,causal=1,dtype=bf16 b=128,s_q=1,h_q=16,s_k=4096,varlen=0,causal=1,dtype=bf16 b=128,s_q=1,h_q=128,s_k=4096,varlen=1,causal=1,dtype=bf16 b=128,s_q=2,h_q=128,s_k=4096,varlen=1,causal=1,dtype=bf16 b=128,s_q=1,h_q=128,s_k=4096,varlen=0,causal=1,dtype=bf16 b=128,s_q=2,h_q=64,s_k=4096,varlen=1,causal=1,dtype=bf16 b=1,s_q=1,h_q=16,s_k=1000,varlen=0,causal=1,dtype=bf16"
ROUNDS=${ROUNDS:-5} SIDES="base:exp/base shift:exp/shift" EXP_CASES="$V" DEADLINE=${DEADLINE:-400} \
  bash bench/results/experiments/2026-11-22/ab_run.sh
