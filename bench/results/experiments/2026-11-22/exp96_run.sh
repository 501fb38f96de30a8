#!/usr/bin/env bash
# exp96 (H200): HEAD (chain schedule, d8bf4a5) against 8a0d4a8 (before it, in exp/head): build both, A/B bench, 4 rounds rotating.
# Derived from exp94_run.sh: the same build and A/B loop, without tests and sanitizers; other cases, 4 rounds.
# The table: ab_table.py (factored out after this ran; the same output). Since exp105 the builds
# and rounds are ab_run.sh's (the same steps; the sides are named b and n).
set -uo pipefail
export EXP_CASES="
 b=128,h_q=64,s_k=4096,varlen=1 b=128,h_q=64,s_k=8192,varlen=1 b=128,h_q=64,s_k=16384,varlen=1 b=128,h_q=32,s_q=2,s_k=4096,varlen=1
 b=128,h_q=128,s_k=4096,varlen=1 b=128,h_q=64,s_q=2,causal=1,s_k=4096,varlen=1 b=128,h_q=128,s_k=8192,varlen=1
 b=128,h_q=128,s_q=2,causal=1,s_k=4096,varlen=1 b=128,h_q=128,s_q=2,causal=1,s_k=8192,varlen=1
 b=256,h_q=128,s_k=4096,varlen=1 b=384,h_q=64,s_k=4096,varlen=1
 b=128,h_q=64,s_k=4096,varlen=0 b=128,h_q=16,s_k=4096,varlen=1 b=128,h_q=16,s_k=4096,varlen=0
"
SIDES="b:exp/head n:." ROUNDS=4 META=1 DEADLINE=540 OUT=${OUT:-/tmp/out94} exec bash "$(dirname "$0")/ab_run.sh"
