#!/usr/bin/env bash
# exp126 (H200; exp/p128 and exp/pnone: git archive of 8d002cf with the promotion in
# src/kernels/sm90/decode_launch.cuh changed by sed; exp/old: git archive of c983a71): the KV tensor map's L2 promotion, 256B (base, HEAD 8d002cf) against 128B and none; old = c983a71 (before exp125).
set -uo pipefail
V="b=128,s_q=1,h_q=16,s_k=4096,varlen=1,causal=1,dtype=bf16 b=128,s_q=1,h_q=64,s_k=4096,varlen=1,causal=1,dtype=bf16 b=128,s_q=1,h_q=64,s_k=4096,varlen=0,causal=1,dtype=bf16 b=128,s_q=1,h_q=64,s_k=8192,varlen=0,causal=1,dtype=bf16 b=128,s_q=1,h_q=16,s_k=16384,varlen=0,causal=1,dtype=bf16 b=128,s_q=1,h_q=128,s_k=4096,varlen=1,causal=1,dtype=bf16 b=128,s_q=1,h_q=128,s_k=4096,varlen=0,causal=1,dtype=bf16 b=128,s_q=2,h_q=128,s_k=4096,varlen=1,causal=1,dtype=bf16 b=1,s_q=1,h_q=16,s_k=131072,varlen=0,causal=1,dtype=bf16 b=1,s_q=1,h_q=64,s_k=131072,varlen=0,causal=1,dtype=bf16"
ROUNDS=${ROUNDS:-5} SIDES="base:exp/base p128:exp/p128 pnone:exp/pnone old:exp/old" EXP_CASES="$V" DEADLINE=${DEADLINE:-400} \
  bash bench/results/experiments/2026-11-22/ab_run.sh
