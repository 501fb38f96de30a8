#!/usr/bin/env bash
# exp98: the wide kernel's output staged over the Q tile and written by bulk copies (working tree)
# against HEAD (exp/head, from `git archive`). Builds both, runs the GPU tests on the new build
# (kAuto, hopper, and the wide kernel for every M), then an A/B bench, rotating order.
# Derived from exp96_run.sh (same A/B loop and table).
# The table: ab_table.py (factored out after this ran; the same output). Since exp105 the builds,
# tests and rounds are ab_run.sh's (the same steps; the sides are named b and n).
set -uo pipefail
export EXP_CASES=${EXP_CASES:-
 b=128,h_q=64,s_k=4096,varlen=1 b=128,h_q=64,s_k=4096,varlen=0 b=128,h_q=64,s_k=16384,varlen=1
 b=128,h_q=32,s_q=2,s_k=4096,varlen=1
 b=128,h_q=128,s_k=4096,varlen=1 b=128,h_q=128,s_k=4096,varlen=0 b=128,h_q=128,s_k=16384,varlen=1
 b=128,h_q=128,s_q=2,causal=1,s_k=4096,varlen=1 b=128,h_q=128,s_q=2,causal=1,s_k=4096,varlen=0
 b=128,h_q=128,s_q=2,causal=1,s_k=8192,varlen=1 b=8,h_q=64,s_q=2,s_k=2048,varlen=0 b=1,h_q=64,s_k=131072,varlen=0
 b=128,h_q=16,s_k=4096,varlen=1
}
TESTS=1 SIDES="b:exp/head n:." ROUNDS=4 OUT=${OUT:-/tmp/out98} exec bash "$(dirname "$0")/ab_run.sh"
