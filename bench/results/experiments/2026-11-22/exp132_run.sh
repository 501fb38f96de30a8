#!/usr/bin/env bash
# exp132 (diagnostic): the chain metadata's time with 16, 4 or 1 candidate fills running, for
# the sorted-entry picker (HEAD) and exp131's group picker. exp/base = HEAD + exp132_diag.diff,
# exp/gp = that + exp131_group_picker.diff. With FLASH_MLA_DIAG_FILLS=n only the first n
# candidates fill (the others count as failed), so the schedule may differ: metadata µs only.
# Four fills run one warp per scheduler, as four CTAs of a cluster would.
set -uo pipefail
V=""
for c in "64,1,4096,128" "128,1,4096,128" "64,1,4096,511" "128,1,4096,256"; do
  IFS=, read -r h s k b <<< "$c"
  V+="b=$b,s_q=$s,h_q=$h,s_k=$k,varlen=1,causal=1,dtype=bf16 "
done
ROUNDS=${ROUNDS:-2} DEADLINE=${DEADLINE:-400} \
  SIDES="base:exp/base base4:exp/base:-DFLASH_MLA_DIAG_FILLS=4 base1:exp/base:-DFLASH_MLA_DIAG_FILLS=1 gp:exp/gp gp4:exp/gp:-DFLASH_MLA_DIAG_FILLS=4 gp1:exp/gp:-DFLASH_MLA_DIAG_FILLS=1" \
  EXP_CASES="$V" bash bench/results/experiments/2026-11-22/ab_run.sh > /dev/null
python3 - "${OUT:-/tmp/outab}" <<'PY'
import glob, json, statistics, sys
out = sys.argv[1]
sides = ["base", "base4", "base1", "gp", "gp4", "gp1"]
meta = {}
for s in sides:
    for f in sorted(glob.glob(f"{out}/ab_{s}_*.json")):
        for i, c in enumerate(json.load(open(f))["cases"]):
            meta.setdefault((i, s), []).append(c["meta_us"])
            meta.setdefault((i, "name"), f"h{c['h_q']} b={c['b']} sk={c['s_k']} vl={c['varlen']}")
print("metadata us, median of rounds; fills running: 16 / 4 / 1")
print(f"{'case':28} {'sorted-entry picker':>24} {'group picker':>24}")
i = 0
while (i, "name") in meta:
    row = [statistics.median(meta[(i, s)]) if (i, s) in meta else float('nan') for s in sides]
    print(f"{meta[(i, 'name')]:28} {row[0]:8.1f}{row[1]:8.1f}{row[2]:8.1f} {row[3]:8.1f}{row[4]:8.1f}{row[5]:8.1f}")
    i += 1
PY
