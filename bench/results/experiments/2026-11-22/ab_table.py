#!/usr/bin/env python3
"""The A/B table of the experiment scripts of this folder (factored out of exp94, exp96-exp98 and
exp100 after they ran; the same output).

    ab_table.py OUT [--meta] BASE[:LABEL] SIDE[:LABEL] [SIDE[:LABEL] ...]

reads OUT/ab_<side>_<round>.json (the benchmark's --json) and prints, per case, the median us of
BASE and each side's gain in time against it: median, and [min, max] over rounds (round r of a
side against round r of BASE). With one side its median us is printed too; --meta adds the
median metadata us of BASE and that side.
"""
import glob, json, statistics, sys


def load(out, side):
    runs = []
    for f in sorted(glob.glob(f"{out}/ab_{side}_*.json")):
        try:
            runs.append(json.load(open(f))["cases"])
        except Exception as e:  # a run cut short: report it, use the others
            print("bad", f, e)
    return runs


def main(argv):
    meta = "--meta" in argv
    args = [a for a in argv if a != "--meta"]
    out, sides = args[0], [(s.split(":") + [s])[:2] for s in args[1:]]
    runs = {name: load(out, name) for name, _ in sides}
    (base, base_label), others = sides[0], sides[1:]
    if not runs[base] or not all(runs[n] for n, _ in others):
        return
    one = len(others) == 1
    head = f"{'case':36} {base_label + ' us':>8}"
    for _, label in others:
        head += f" {label + ' us':>8}   gain [rounds]" if one else f"  {label:18}"
    print(head + ("        meta " + base_label + "/" + others[0][1] if meta and one else ""))
    for i, c in enumerate(runs[base][0]):
        b = [r[i]["us"] for r in runs[base]]
        line = f"{'h%d s%d b=%3d sk=%6d vl=%d' % (c['h_q'], c['s_q'], c['b'], c['s_k'], c['varlen']):36}"
        line += f" {statistics.median(b):8.1f}"
        for name, _ in others:
            n = [r[i]["us"] for r in runs[name]]
            g = [100 * (x / y - 1) for x, y in zip(b, n)]
            gain = f"{100 * (statistics.median(b) / statistics.median(n) - 1):+6.1f}% [{min(g):+.1f},{max(g):+.1f}]"
            line += f" {statistics.median(n):8.1f} {gain}" if one else f"  {gain}"
        if meta and one:
            mb = statistics.median(r[i]["meta_us"] for r in runs[base])
            mn = statistics.median(r[i]["meta_us"] for r in runs[others[0][0]])
            line += f"  {mb:6.1f}/{mn:6.1f}"
        print(line)


if __name__ == "__main__":
    main(sys.argv[1:])
