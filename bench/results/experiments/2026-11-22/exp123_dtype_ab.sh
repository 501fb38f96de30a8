#!/usr/bin/env bash
# bf16 against fp16 on the same cases, order alternating by round (exp123, diagnostic).
set -uo pipefail
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
cmake -S . -B build-d -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES=90a-real \
  -DFLASH_MLA_CUTLASS_INCLUDE_DIR=$PWD/.deps/cutlass/include > "$OUT/cfg.log" 2>&1 &&
  cmake --build build-d -j 16 --target flash_mla_bench > "$OUT/build.log" 2>&1 || { tail -20 "$OUT/build.log"; exit 1; }
B=build-d/bench/flash_mla_bench
cases() { for c in "b=128,s_q=1,h_q=128,s_k=4096,varlen=0" "b=128,s_q=1,h_q=128,s_k=8192,varlen=0" \
  "b=128,s_q=2,h_q=128,s_k=4096,varlen=0" "b=128,s_q=2,h_q=64,s_k=8192,varlen=0" "b=128,s_q=1,h_q=64,s_k=4096,varlen=1" \
  "b=128,s_q=1,h_q=16,s_k=4096,varlen=1"; do echo "--case $c,causal=1,dtype=$1"; done; }
for r in 1 2 3 4 5 6; do
  if [ $((r % 2)) = 1 ]; then order="bf16 fp16"; else order="fp16 bf16"; fi
  for dt in $order; do
    $B --no-ceilings $(cases $dt) > "$OUT/d_${dt}_$r.txt" 2>&1 || echo "bench $dt $r rc=$?"
  done
done
python3 - "$OUT" <<'PY'
import sys,glob,re,statistics,collections
out=sys.argv[1]; res=collections.defaultdict(lambda: collections.defaultdict(list))
for f in sorted(glob.glob(out+'/d_*_*.txt')):
    dt=f.split('/')[-1].split('_')[1]
    for line in open(f):
        p=line.split()
        if len(p)>10 and p[0]=='auto':
            key=f"h{p[4]} s{p[3]} sk={p[6]} vl={p[7]}"
            res[key][dt].append((float(p[8]), p[-2]))
print("case                       bf16 us  fp16 us  fp16/bf16 time  [rounds]   MHz bf16/fp16")
for k,v in res.items():
    b=[x[0] for x in v['bf16']]; h=[x[0] for x in v['fp16']]
    rat=[hh/bb-1 for bb,hh in zip(b,h)]
    print(f"{k:24s} {statistics.median(b):8.1f} {statistics.median(h):8.1f}  {100*(statistics.median(h)/statistics.median(b)-1):+6.1f}%  [{100*min(rat):+.1f},{100*max(rat):+.1f}]  {statistics.median([float(x[1]) for x in v['bf16']]):.0f}/{statistics.median([float(x[1]) for x in v['fp16']]):.0f}")
PY
