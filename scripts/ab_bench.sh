#!/usr/bin/env bash
# A/B timing on the lent GPU, from the repository root: builds a base source tree and the
# working tree, then runs the benchmark on each in turn, the side that runs first alternating
# per round (base, new, new, base, ...) so drift of clocks and temperature falls on both, and
# prints per case the median of each side.
#
#   BASE=build-ab/base   base source tree (e.g. `git archive <commit> | tar -x -C build-ab/base`,
#                        carried to the device as an ignored path)
#   ARGS='--sweep --kernel hopper --reps 20'   benchmark arguments of every run
#   ROUNDS=2             runs per side
#   RUN_LIMIT=150        seconds one benchmark run may take (a hang ends the script)
# Writes $OUT/ab_{base,new}_<round>.json and prints the comparison table last. Every run
# verifies its rows; a failed row makes the benchmark exit non-zero, which stops the script.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 2
OUT=${OUT:-$PWD/ab_out}
BASE=${BASE:-build-ab/base}
ARGS=${ARGS:---sweep --kernel hopper --reps 20}
ROUNDS=${ROUNDS:-2}
RUN_LIMIT=${RUN_LIMIT:-150}
mkdir -p "$OUT"
J=$(nproc)
build() {  # source dir, build dir
  cmake -S "$1" -B "$2" -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES=90a-real \
    >"$OUT/configure_$(basename "$2").log" 2>&1 &&
    cmake --build "$2" -j "$J" >"$OUT/build_$(basename "$2").log" 2>&1
}
build "$BASE" build-ab/b & pid=$!
build . build-ab/n || { tail -30 "$OUT/build_n.log"; exit 1; }
wait $pid || { tail -30 "$OUT/build_b.log"; exit 1; }
run_side() {  # side (base | new), round
  local dir=b
  if [ "$1" = new ]; then dir=n; fi
  # shellcheck disable=SC2086
  timeout "$RUN_LIMIT" build-ab/$dir/bench/flash_mla_bench $ARGS --json "$OUT/ab_$1_$2.json" \
    >"$OUT/ab_$1_$2.txt" 2>&1 || { echo "$1 run $2 failed ($?)"; exit 1; }
}
# The side that runs first alternates between rounds: on the H200 the longest compute-bound
# cases favoured the second run of a round by several percent (docs/perf-notes.md, "Not kept:
# consumer registers 240 / 240").
for r in $(seq 1 "$ROUNDS"); do
  if [ $((r % 2)) -eq 1 ]; then order="base new"; else order="new base"; fi
  for side in $order; do run_side "$side" "$r"; done
done
python3 - "$OUT" "$ROUNDS" <<'PY'
import json, statistics, sys
out, rounds = sys.argv[1], int(sys.argv[2])
def load(side):
    runs = [json.load(open(f"{out}/ab_{side}_{r}.json"))["cases"] for r in range(1, rounds + 1)]
    keys = [(c["kernel"], c["dtype"], c["b"], c["s_q"], c["h_q"], c["s_k"], c["varlen"]) for c in runs[0]]
    return keys, {k: [run[i] for run in runs] for i, k in enumerate(keys)}
keys, base = load("base")
_, new = load("new")
print(f"{'kernel':8} {'dtype':5} {'s_q':>3} {'h_q':>4} {'s_k':>6} {'vl':>2} {'base us':>9} {'new us':>9} {'gain %':>7} {'new %copy':>9} {'new %gemm':>9}")
gains = []
for k in keys:
    b = statistics.median(c["us"] for c in base[k]); n = statistics.median(c["us"] for c in new[k])
    gains.append(b / n - 1)
    last = new[k][-1]
    print(f"{k[0]:8} {k[1]:5} {k[3]:>3} {k[4]:>4} {k[5]:>6} {k[6]:>2} {b:9.1f} {n:9.1f} {100*(b/n-1):7.1f} "
          f"{last.get('pct_copy', 0):9.1f} {last.get('pct_gemm', 0):9.1f}")
print(f"geomean gain {100*(statistics.geometric_mean([1+g for g in gains])-1):.1f} %  over {len(gains)} cases")
PY
