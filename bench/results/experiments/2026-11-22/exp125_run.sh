#!/usr/bin/env bash
# exp125 (first A/B, H200; from the repository root with exp/base = git archive of c983a71 and
# exp/shift = the tree of 016aca9): partial last pages loaded shifted (negative TMA token coordinate, zero fill) against HEAD.
set -uo pipefail
V="b=128,s_q=1,h_q=16,s_k=4096,varlen=1,causal=1,dtype=bf16 b=128,s_q=2,h_q=16,s_k=4096,varlen=1,causal=1,dtype=bf16 b=128,s_q=1,h_q=64,s_k=4096,varlen=1,causal=1,dtype=bf16 b=128,s_q=2,h_q=32,s_k=4096,varlen=1,causal=1,dtype=bf16 b=128,s_q=1,h_q=64,s_k=8192,varlen=1,causal=1,dtype=bf16 b=128,s_q=1,h_q=16,s_k=8192,varlen=1,causal=1,dtype=bf16 b=128,s_q=1,h_q=64,s_k=4096,varlen=0,causal=1,dtype=bf16 b=128,s_q=1,h_q=16,s_k=4096,varlen=0,causal=1,dtype=bf16 b=128,s_q=1,h_q=128,s_k=4096,varlen=1,causal=1,dtype=bf16 b=128,s_q=2,h_q=128,s_k=4096,varlen=1,causal=1,dtype=bf16"
ROUNDS=${ROUNDS:-5} TESTS=1 TEST_TIMEOUT=150 \
SAN_FILTER='*b1_L1_*:*b1_L65_*:*b4_mixed*:*M256_*:*sq2_causal*:*sq8_causal*:*strided*:*RunToRunBitwiseIdentical*' \
SIDES="base:exp/base shift:exp/shift" EXP_CASES="$V" DEADLINE=${DEADLINE:-470} \
  bash bench/results/experiments/2026-11-22/ab_run.sh
T=build-ab/shift/tests/flash_mla_gpu_tests
SAN=$(command -v compute-sanitizer || echo /usr/local/cuda/bin/compute-sanitizer)
for tool in memcheck racecheck synccheck; do
  FLASH_MLA_KERNEL=hopper FLASH_MLA_HOPPER_NARROW=1 timeout 100 "$SAN" --tool $tool --error-exitcode 9 $T \
    --gtest_brief=1 --gtest_filter='*b1_L1_*:*b1_L63_*:*b1_L65_*:*b4_mixed*:*M16_*:*sq8_causal*:*b64_mixed_M16*' > "$OUT/nsan_$tool.txt" 2>&1
  echo "narrow $tool: rc=$? $(grep -E 'ERROR SUMMARY|RACECHECK SUMMARY|^\[  PASSED' "$OUT/nsan_$tool.txt" | tr '\n' ' ')"
done
