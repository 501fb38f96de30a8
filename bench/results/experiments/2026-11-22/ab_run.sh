#!/usr/bin/env bash
# A/B of several builds (exp105 on). SIDES is a space-separated list of NAME:DIR[:FLAGS[:ENV]]:
# the source tree DIR (`.` for the working tree, or a `git archive` of a commit) built with FLAGS
# (comma-separated, e.g. diagnostic -D macros, put in both the CUDA and the C++ flags; -Xptxas=...
# ones in the CUDA flags only), its bench run with the environment ENV (comma-separated VAR=VALUE,
# exp115 on). Sides with the same DIR and FLAGS share one build. The first side is the base.
# Then, with TESTS=1, the GPU tests of the last side, in its environment (exp118 on): kAuto,
# hopper, and the wide kernel for every M; with SAN_FILTER also memcheck, racecheck and synccheck
# on those tests with the wide kernel; each test run stops after TEST_TIMEOUT s (200). Then the
# bench, ROUNDS rounds (3) with the order rotating, `--kernel KERNEL` (auto), cases from
# EXP_CASES (space-separated --case values); and ab_table.py's table: each side's gain in time
# against the base (with META=1 and two sides, the metadata µs too).
# Derived from exp97_run.sh and exp98_run.sh.
set -uo pipefail
T0=$SECONDS
OUT=${OUT:-/tmp/outab}; mkdir -p "$OUT"
J=$(nproc)
CUT=-DFLASH_MLA_CUTLASS_INCLUDE_DIR=$PWD/.deps/cutlass/include
build() {  # name, dir, flags (comma-separated; -Xptxas=... ones go to nvcc only), target
  local f=${3//,/ } cxx=""
  for x in $f; do [[ $x == -Xptxas* ]] || cxx+=" $x"; done
  cmake -S "$2" -B build-ab/$1 -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES=90a-real $CUT \
    "-DCMAKE_CUDA_FLAGS=$f" "-DCMAKE_CXX_FLAGS=$cxx" >"$OUT/cfg_$1.log" 2>&1 &&
  cmake --build build-ab/$1 -j $((J / 2)) $4 >"$OUT/build_$1.log" 2>&1
}
NAMES=() DIRS=() FLAGS=() ENVS=() BUILDS=()  # BUILDS: the side whose build each side runs
for s in ${SIDES:?}; do
  IFS=: read -r n d f e <<< "$s"; NAMES+=("$n"); DIRS+=("$d"); FLAGS+=("${f:-}"); ENVS+=("${e:-}")
  b=$n
  for ((j = 0; j < ${#NAMES[@]} - 1; ++j)); do
    [ "${DIRS[j]}|${FLAGS[j]}" = "$d|${f:-}" ] && { b=${BUILDS[j]}; break; }
  done
  BUILDS+=("$b")
done
N=${#NAMES[@]}
UNIQUE=()  # indices of the sides that build
for ((j = 0; j < N; ++j)); do [ "${BUILDS[j]}" = "${NAMES[j]}" ] && UNIQUE+=($j); done
for ((k = 0; k < ${#UNIQUE[@]}; k += 2)); do
  pids=() names=()
  for ((u = k; u < k + 2 && u < ${#UNIQUE[@]}; ++u)); do
    j=${UNIQUE[u]}
    target="--target flash_mla_bench"
    [ "${TESTS:-0}" = 1 ] && [ "${NAMES[j]}" = "${BUILDS[N - 1]}" ] && target=""
    build "${NAMES[j]}" "${DIRS[j]}" "${FLAGS[j]}" "$target" & pids+=($!); names+=("${NAMES[j]}")
  done
  for ((j = 0; j < ${#pids[@]}; ++j)); do
    wait ${pids[j]} || { tail -30 "$OUT/build_${names[j]}.log"; exit 1; }
  done
done
echo "built at $((SECONDS-T0)) s"
if [ "${TESTS:-0}" = 1 ]; then
  T=build-ab/${BUILDS[N - 1]}/tests/flash_mla_gpu_tests
  for k in auto hopper hopper-wide; do
    kern=${k%-wide}; narrow=1; [ "$k" = hopper-wide ] && narrow=0
    env ${ENVS[N - 1]//,/ } FLASH_MLA_KERNEL=$kern FLASH_MLA_HOPPER_NARROW=$narrow timeout ${TEST_TIMEOUT:-200} $T \
      --gtest_brief=1 > "$OUT/gtest_$k.txt" 2>&1
    echo "gpu tests $k: rc=$? $(grep -E '^\[  PASSED|FAILED TEST' "$OUT/gtest_$k.txt" | head -3 | tr '\n' ' ')"
  done
  if [ -n "${SAN_FILTER:-}" ]; then
    SAN=$(command -v compute-sanitizer || echo /usr/local/cuda/bin/compute-sanitizer)
    for tool in memcheck racecheck synccheck; do
      env ${ENVS[N - 1]//,/ } FLASH_MLA_KERNEL=hopper FLASH_MLA_HOPPER_NARROW=0 timeout ${TEST_TIMEOUT:-200} \
        "$SAN" --tool $tool --error-exitcode 9 $T --gtest_brief=1 --gtest_filter="$SAN_FILTER" \
        > "$OUT/san_$tool.txt" 2>&1
      echo "$tool: rc=$? $(grep -E 'ERROR SUMMARY|RACECHECK SUMMARY|^\[  PASSED' "$OUT/san_$tool.txt" | tr '\n' ' ')"
    done
  fi
  echo "tests done at $((SECONDS-T0)) s"
fi
CASES=(${EXP_CASES:?})
ARGS=(--no-ceilings --kernel ${KERNEL:-auto})
for c in "${CASES[@]}"; do ARGS+=(--case "$c"); done
for ((r = 1; r <= ${ROUNDS:-3}; ++r)); do
  for ((k = 0; k < N; ++k)); do
    i=$(((k + r) % N)); side=${NAMES[i]}
    [ $((SECONDS-T0)) -gt ${DEADLINE:-540} ] && { echo "deadline before round $r"; break 2; }
    env ${ENVS[i]//,/ } timeout 150 build-ab/${BUILDS[i]}/bench/flash_mla_bench "${ARGS[@]}" \
      --json "$OUT/ab_${side}_$r.json" > "$OUT/ab_${side}_$r.txt" 2>&1 || echo "bench $side $r rc=$?"
  done
done
echo "bench done at $((SECONDS-T0)) s"
META_ARG=(); [ "${META:-0}" = 1 ] && META_ARG=(--meta)
python3 "$(dirname "$0")/ab_table.py" "$OUT" "${META_ARG[@]}" "${NAMES[@]}"
