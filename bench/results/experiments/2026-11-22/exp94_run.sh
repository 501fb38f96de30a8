#!/usr/bin/env bash
# exp94: warp-wide chain fill (working tree) against HEAD: build both, tests, sanitizers, A/B bench.
# The table: ab_table.py (factored out after this ran; the same output).
set -uo pipefail
T0=$SECONDS
OUT=${OUT:-/tmp/out94}; mkdir -p "$OUT"
J=$(nproc)
CUT=-DFLASH_MLA_CUTLASS_INCLUDE_DIR=$PWD/.deps/cutlass/include
build() { cmake -S "$1" -B "$2" -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES=90a-real $CUT >"$OUT/cfg_$3.log" 2>&1 && cmake --build "$2" -j $J >"$OUT/build_$3.log" 2>&1; }
build exp/head build-ab/b head & pid=$!
build . build-ab/n new || { tail -40 "$OUT/build_new.log"; exit 1; }
wait $pid || { tail -40 "$OUT/build_head.log"; exit 1; }
echo "built at $((SECONDS-T0)) s"
nvcc -std=c++17 -O3 -arch=sm_90a -Isrc -Iinclude exp/prof/mk.cu -o /tmp/mk_prof > "$OUT/prof_build.log" 2>&1 && /tmp/mk_prof
grep -A3 'metadata_kernel' "$OUT/build_new.log" | head -5
T=build-ab/n/tests/flash_mla_gpu_tests
timeout 200 $T --gtest_brief=1 > "$OUT/gtest_auto.log" 2>&1; echo "gtest auto rc=$? $(grep -E 'PASSED|FAILED' "$OUT/gtest_auto.log" | head -3 | tr '\n' ' ')"
F='MetadataGpu.*:*chain*:DecodeGrid.*:*b64_mixed*:*parts*'
FLASH_MLA_KERNEL=portable timeout 100 $T --gtest_brief=1 --gtest_filter="$F" > "$OUT/gtest_portable.log" 2>&1; echo "gtest portable rc=$? $(grep -E 'PASSED|FAILED' "$OUT/gtest_portable.log" | head -3 | tr '\n' ' ')"
FLASH_MLA_KERNEL=hopper FLASH_MLA_HOPPER_NARROW=0 timeout 100 $T --gtest_brief=1 --gtest_filter="$F" > "$OUT/gtest_wide.log" 2>&1; echo "gtest wide rc=$? $(grep -E 'PASSED|FAILED' "$OUT/gtest_wide.log" | head -3 | tr '\n' ' ')"
echo "tests done at $((SECONDS-T0)) s"
SF='*chain_b20*:MetadataGpu.RunsOnANonDefaultStream'
for tool in memcheck racecheck synccheck; do
  timeout 60 compute-sanitizer --tool $tool --error-exitcode 9 $T --gtest_filter="$SF" > "$OUT/san_$tool.log" 2>&1
  echo "$tool rc=$? $(grep -E 'ERROR SUMMARY|PASSED|FAILED' "$OUT/san_$tool.log" | tail -2 | tr '\n' ' ')"
done
echo "sanitizers done at $((SECONDS-T0)) s"
CASES=(
 b=128,h_q=64,s_k=4096,varlen=1 b=128,h_q=64,s_k=8192,varlen=1 b=128,h_q=64,s_k=16384,varlen=1 b=128,h_q=64,s_k=32768,varlen=1
 b=128,h_q=128,s_k=4096,varlen=1 b=128,h_q=64,s_q=2,causal=1,s_k=4096,varlen=1 b=128,h_q=128,s_k=8192,varlen=1 b=128,h_q=128,s_k=16384,varlen=1
 b=128,h_q=32,s_k=4096,varlen=1 b=100,h_q=64,s_k=4096,varlen=1 b=50,h_q=128,s_k=8192,varlen=1
 b=128,h_q=16,s_k=4096,varlen=1 b=128,h_q=64,s_k=4096,varlen=0 b=128,h_q=128,s_q=2,causal=1,s_k=4096,varlen=1
 b=64,h_q=64,s_k=4096,varlen=1 b=8,h_q=128,s_k=2048,varlen=1 b=32,h_q=128,s_k=1024,varlen=2
)
ARGS=(--no-ceilings --kernel auto)
for c in "${CASES[@]}"; do ARGS+=(--case "$c"); done
for r in 1 2 3; do
  if [ $((r % 2)) -eq 1 ]; then order="b n"; else order="n b"; fi
  for side in $order; do
    [ $((SECONDS-T0)) -gt 540 ] && { echo "deadline before round $r"; break 2; }
    timeout 120 build-ab/$side/bench/flash_mla_bench "${ARGS[@]}" --json "$OUT/ab_${side}_$r.json" > "$OUT/ab_${side}_$r.txt" 2>&1 || echo "bench $side $r rc=$?"
  done
done
echo "bench done at $((SECONDS-T0)) s"
python3 "$(dirname "$0")/ab_table.py" "$OUT" --meta b:head n:new
