#!/usr/bin/env bash
# exp114: each kernel of a decode call timed alone under ncu (gpu__time_duration, clocks and caches
# left as they are), against the bench's time of the whole call, for variable and equal lengths.
# Builds the working tree's bench into build-ab/ncu; prints one line per case and kernel
# (median over the launches ncu saw). Cases from EXP_CASES (space-separated --case values).
set -uo pipefail
OUT=${OUT:-/tmp/outncu}; mkdir -p "$OUT"
B=build-ab/ncu
cmake -S . -B $B -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES=90a-real \
  -DFLASH_MLA_CUTLASS_INCLUDE_DIR=$PWD/.deps/cutlass/include >"$OUT/cfg.log" 2>&1 &&
  cmake --build $B -j "$(nproc)" --target flash_mla_bench >"$OUT/build.log" 2>&1 || { tail -20 "$OUT/build.log"; exit 1; }
i=0
for c in ${EXP_CASES:?}; do
  i=$((i + 1))
  $B/bench/flash_mla_bench --no-ceilings --kernel auto --case "$c" > "$OUT/bench_$i.txt" 2>&1
  timeout 200 ncu --clock-control none --cache-control none --metrics gpu__time_duration.sum --csv \
    $B/bench/flash_mla_bench --no-ceilings --kernel auto --case "$c" --reps 20 --warmup 3 \
    > "$OUT/ncu_$i.csv" 2> "$OUT/ncu_$i.err"
  python3 - "$c" "$OUT/bench_$i.txt" "$OUT/ncu_$i.csv" <<'PY'
import csv, statistics, sys, re
case, bench, path = sys.argv[1:]
us = [l.split()[8] for l in open(bench) if l.startswith("auto")]
rows = [r for r in csv.reader(l for l in open(path) if l.startswith('"'))]
head, rows = rows[0], rows[1:]
k, v = head.index("Kernel Name"), head.index("Metric Value")
unit = head.index("Metric Unit")
d = {}
for r in rows:
    name = re.sub(r"[<(].*", "", r[k].replace("(anonymous namespace)::", "")).split("::")[-1]
    x = float(r[v].replace(",", ""))
    scale = {"nsecond": 1e-3, "ns": 1e-3, "usecond": 1.0, "us": 1.0, "msecond": 1e3, "ms": 1e3}
    if r[unit] not in scale:
        sys.exit(f"unknown unit {r[unit]!r} for {r[k]}")
    x *= scale[r[unit]]  # to us
    d.setdefault(name, []).append(x)
print(f"{case}: call {us[0] if us else '?'} us; " +
      "; ".join(f"{n} {statistics.median(x):.1f} us (n={len(x)})" for n, x in d.items()))
PY
done
