#!/usr/bin/env bash
# One call on the lent GPU machine, from the repository root: build, SASS / resource report,
# ctest and the GPU grid once per kernel (portable, hopper, hopper-wide: the wide Hopper kernel
# for every M), compute-sanitizer (memcheck, racecheck, synccheck), benchmark sweep. A summary table
# is printed last; the exit status is non-zero if any selected step failed.
#
#   STEPS=build,sass,test,sanitize,bench,pyinstall,pytest,pybench
#                                          steps to run (default: the first five, in this order;
#                                          the Python ones install the package with pip, run
#                                          python/tests, and run python -m flash_mla.bench)
#   ARCHS=90a-real                         CMAKE_CUDA_ARCHITECTURES
#   BUILD_DIR=build-gpu                    build folder (ignored by git)
#   SAN_FILTER=...                         gtest filter of the GPU tests run under the sanitizers
#                                          (default: a few small cases of tests/gpu; kAuto picks the
#                                          kernel by shape, FLASH_MLA_KERNEL=hopper|portable forces one)
#   GPU_TEST_BIN=...                       GPU test binary (default: first *gpu* executable in tests/)
#   BENCH_ARGS='--sweep --extra --kernel all'   arguments of the benchmark sweep
#   PYBENCH_ARGS='--quick'                 arguments of python -m flash_mla.bench
#   COMMIT=abc1234                         commit recorded in the JSON (the copy here has no .git)
#   DEADLINE=570                           seconds for the whole script; late steps are cut short
#
# Files under $OUT (at most 8 come back): summary.txt, logs.tar.gz, <gpu>.json, bench_table.txt,
# resource_usage.txt, sass_summary.txt.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 2
OUT=${OUT:-$PWD/gpu_check_out}
STEPS=${STEPS:-build,sass,test,sanitize,bench}
ARCHS=${ARCHS:-90a-real}
BUILD=${BUILD_DIR:-build-gpu}
SAN_FILTER=${SAN_FILTER:-*b1_L65_*:*b4_mixed*:*M256_*:*sq2_causal*:*hkv2_sq2*:*strided*:*RunToRunBitwiseIdentical*:MetadataGpu.*:Seeded/DecodeFuzz.*/?}
BENCH_ARGS=${BENCH_ARGS:---sweep --extra --kernel all}
PYBENCH_ARGS=${PYBENCH_ARGS:---quick}
DEADLINE=${DEADLINE:-570}
LOG=$(mktemp -d)
mkdir -p "$OUT"
SUMMARY=()
FAILED=0

want() { [[ ",$STEPS," == *",$1,"* ]]; }
record() {  # name, ok|FAILED|skipped, detail
  SUMMARY+=("$(printf '%-20s %-8s %s' "$1" "$2" "$3")")
  [[ $2 == FAILED ]] && FAILED=1
  echo "[$(date +%T) +${SECONDS}s] $1: $2 $3"
}
left() { echo $((DEADLINE - SECONDS)); }
demangle() { if command -v c++filt >/dev/null; then c++filt; else cat; fi; }
show_tail() { echo "---- last lines of $1"; tail -n "${2:-25}" "$1"; echo "----"; }

nvidia-smi -L
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.mem,temperature.gpu,power.draw \
  --format=csv >"$LOG/gpu_state.csv" 2>&1
GPU_NAME=$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -n1)
SLUG=$(echo "${GPU_NAME:-unknown-gpu}" | tr '[:upper:]' '[:lower:]' | sed -E 's/[^a-z0-9]+/-/g; s/^-+//; s/-+$//')
BENCH_BIN=$BUILD/bench/flash_mla_bench
SAN=$(command -v compute-sanitizer || echo /usr/local/cuda/bin/compute-sanitizer)

if want build; then
  cutlass=()
  [[ -d .deps/cutlass/include ]] && cutlass=(-DFLASH_MLA_CUTLASS_INCLUDE_DIR="$PWD/.deps/cutlass/include")
  t0=$SECONDS
  if cmake -S . -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES="$ARCHS" \
       "${cutlass[@]}" >"$LOG/configure.log" 2>&1 &&
     cmake --build "$BUILD" -j "$(nproc)" >"$LOG/build.log" 2>&1; then
    record build ok "$((SECONDS - t0)) s, archs $ARCHS, $(grep -c 'warning' "$LOG/build.log") warning lines"
  else
    show_tail "$LOG/configure.log" 10; show_tail "$LOG/build.log" 40
    record build FAILED "see configure.log / build.log"
  fi
fi

if want sass; then
  LIB=$(find "$BUILD" -maxdepth 2 -name 'libflash_mla.*' | head -n1)
  if [[ -n $LIB ]] && cuobjdump --dump-resource-usage "$LIB" >"$OUT/resource_usage.txt" 2>&1 &&
     cuobjdump --dump-sass "$LIB" >"$LOG/sass.txt" 2>&1; then
    # Per kernel: counts of the instructions that say which path the code is on.
    awk -v ops="HMMA HGMMA LDSM LDGSTS UTMALDG LDL STL" '
      BEGIN { n_ops = split(ops, op, " "); arch = "?" }
      /^arch = / { arch = $3 }
      /Function : / { fn = arch " " $NF; if (!(fn in seen)) { seen[fn] = 1; order[++n] = fn }; next }
      /\/\*[0-9a-f]+\*\// {
        line = $0; sub(/^[^*]*\/\*[0-9a-f]+\*\/[ \t]*/, "", line); sub(/^@!?U?P[0-9T]+[ \t]+/, "", line)
        split(line, tok, /[ .;]/); count[fn, tok[1]]++ }
      END {
        for (k = 1; k <= n_ops; k++) printf "%7s ", op[k]; print " arch kernel"
        for (i = 1; i <= n; i++) { for (k = 1; k <= n_ops; k++) printf "%7d ", count[order[i], op[k]]; print " " order[i] } }
    ' "$LOG/sass.txt" | demangle >"$OUT/sass_summary.txt"
    record sass ok "resource_usage.txt, sass_summary.txt ($(($(wc -l <"$OUT/sass_summary.txt") - 1)) kernels)"
    cut -c1-160 "$OUT/sass_summary.txt"
  else
    record sass FAILED "no library in $BUILD or cuobjdump failed"
  fi
fi

if want test; then
  t=$(( $(left) < 360 ? $(left) - 60 : 300 )); [[ $t -gt 10 ]] || t=10
  timeout "$t" \
    ctest --test-dir "$BUILD" --output-on-failure --no-tests=error --timeout 120 >"$LOG/ctest.log" 2>&1
  rc=$?
  line=$(grep -E 'tests passed|tests failed' "$LOG/ctest.log" | tail -n1)
  if [[ $rc -eq 0 ]]; then record ctest ok "$line"; else show_tail "$LOG/ctest.log" 40; record ctest FAILED "${line:-rc $rc}"; fi
  # The whole GPU grid once more per kernel: FLASH_MLA_KERNEL makes kAuto mean that kernel;
  # hopper-wide keeps the wide Hopper kernel for M <= 16 too (FLASH_MLA_HOPPER_NARROW=0).
  TEST_BIN=${GPU_TEST_BIN:-$(find "$BUILD/tests" -type f -executable -name '*gpu*' 2>/dev/null | sort | head -n1)}
  for kernel in portable hopper hopper-wide; do
    [[ -x ${TEST_BIN:-} && $(left) -gt 90 ]] || { record "gpu-tests-$kernel" FAILED "no binary or no time"; continue; }
    narrow=1; [[ $kernel == hopper-wide ]] && narrow=0
    FLASH_MLA_KERNEL=${kernel%-wide} FLASH_MLA_HOPPER_NARROW=$narrow timeout 200 "$TEST_BIN" --gtest_brief=1 \
      >"$LOG/gpu-tests-$kernel.log" 2>&1
    rc=$?
    line=$(grep -E '^\[  (PASSED|FAILED|SKIPPED)' "$LOG/gpu-tests-$kernel.log" | tr '\n' ' ')
    if [[ $rc -eq 0 ]]; then record "gpu-tests-$kernel" ok "$line"
    else show_tail "$LOG/gpu-tests-$kernel.log" 30; record "gpu-tests-$kernel" FAILED "rc $rc: $line"; fi
  done
fi

if want sanitize; then
  TEST_BIN=${GPU_TEST_BIN:-$(find "$BUILD/tests" -type f -executable -name '*gpu*' 2>/dev/null | sort | head -n1)}
  for tool in memcheck racecheck synccheck; do
    for target in tests bench; do
      name="$tool-$target"; log="$LOG/sanitize-$name.log"
      if [[ $target == tests ]]; then
        [[ -x ${TEST_BIN:-} ]] || { record "$name" FAILED "no GPU test binary (set GPU_TEST_BIN)"; continue; }
        cmd=("$TEST_BIN" --gtest_filter="$SAN_FILTER")
      else  # no ceilings: cuBLAS and the 1 GiB copy are not ours to check
        cmd=("$BENCH_BIN" --quick --reps 2 --warmup 1 --no-ceilings)
      fi
      [[ $(left) -gt 60 ]] || { record "$name" FAILED "no time left (DEADLINE=$DEADLINE)"; continue; }
      timeout $(( $(left) < 240 ? $(left) - 30 : 210 )) \
        "$SAN" --tool "$tool" --error-exitcode 99 "${cmd[@]}" >"$log" 2>&1
      rc=$?
      line=$(grep -E '(ERROR|RACECHECK) SUMMARY' "$log" | tail -n1 | sed 's/^=* *//')
      if [[ $rc -eq 0 ]]; then record "$name" ok "$line"
      else show_tail "$log" 20; record "$name" FAILED "rc $rc${line:+: $line}"; fi
    done
  done
fi

if want bench; then
  mkdir -p bench/results
  json=bench/results/$SLUG.json
  commit=(); [[ -n ${COMMIT:-} ]] && commit=(--commit "$COMMIT")
  if [[ ! -x $BENCH_BIN ]]; then
    record bench FAILED "no $BENCH_BIN"
  elif [[ $(left) -lt 60 ]]; then
    record bench FAILED "no time left (DEADLINE=$DEADLINE)"
  else
    # shellcheck disable=SC2086  # BENCH_ARGS is a list of words
    timeout $(($(left) - 20)) "$BENCH_BIN" $BENCH_ARGS "${commit[@]}" --json "$json" 2>&1 |
      tee "$OUT/bench_table.txt"
    rc=$?
    if [[ -f $json ]]; then cp "$json" "$OUT/"; else json="no JSON written"; fi
    rows=$(grep -E '^[0-9]+ rows:' "$OUT/bench_table.txt" | tail -n1)
    if [[ $rc -eq 0 ]]; then record bench ok "$json; $rows"
    else record bench FAILED "rc $rc (124: cut at the deadline, JSON has the rows so far); $json; ${rows:-}"; fi
  fi
fi

if want pyinstall; then
  t0=$SECONDS
  if timeout $(($(left) - 30)) python3 -m pip install -v --no-build-isolation --no-deps \
       -C cmake.define.CMAKE_CUDA_ARCHITECTURES="$ARCHS" . >"$LOG/pip.log" 2>&1 &&
     (cd /tmp && python3 -c "import flash_mla, torch; print(flash_mla.is_supported())") \
       >>"$LOG/pip.log" 2>&1; then
    record pyinstall ok "$((SECONDS - t0)) s; $(tail -n1 "$LOG/pip.log")"
  else
    show_tail "$LOG/pip.log" 30
    record pyinstall FAILED "see pip.log"
  fi
fi

if want pytest; then
  t=$(( $(left) < 360 ? $(left) - 60 : 300 )); [[ $t -gt 10 ]] || t=10
  timeout "$t" python3 -m pytest python/tests -q -rs -p no:cacheprovider \
    --junitxml="$OUT/pytest.xml" >"$LOG/pytest.log" 2>&1
  rc=$?
  line=$(tail -n1 "$LOG/pytest.log")
  if [[ $rc -eq 0 ]]; then record pytest ok "$line"
  else show_tail "$LOG/pytest.log" 60; record pytest FAILED "rc $rc: $line"; fi
fi

if want pybench; then
  mkdir -p bench/results
  pyjson=bench/results/$SLUG-python.json
  pyplot=bench/results/$SLUG-python.png
  commit=(); [[ -n ${COMMIT:-} ]] && commit=(--commit "$COMMIT")
  # shellcheck disable=SC2086  # PYBENCH_ARGS is a list of words
  timeout $(($(left) - 20)) python3 -m flash_mla.bench $PYBENCH_ARGS "${commit[@]}" \
    --json "$pyjson" --plot "$pyplot" 2>&1 | tee "$OUT/pybench_table.txt"
  rc=$?
  cp "$pyjson" "$pyplot" "$OUT/" 2>/dev/null
  if [[ $rc -eq 0 ]]; then record pybench ok "$pyjson, $pyplot"
  else record pybench FAILED "rc $rc"; fi
fi

tar -czf "$OUT/logs.tar.gz" -C "$LOG" . 2>/dev/null
{
  echo "==== gpu_check summary: ${GPU_NAME:-no GPU}, ${SECONDS} s, steps $STEPS ===="
  printf '%s\n' "${SUMMARY[@]}"
  echo "result: $([[ $FAILED -eq 0 ]] && echo ALL OK || echo FAILED)"
} | tee "$OUT/summary.txt"
exit $FAILED
