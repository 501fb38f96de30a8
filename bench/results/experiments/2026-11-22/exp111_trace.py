#!/usr/bin/env python3
"""exp111: summary of one traced launch of the wide kernel (exp111_trace.diff; build with
-DFLASH_MLA_DIAG_TRACE). Input: the bench's stdout, whose `C` lines give each CTA's start and
its consumer 0's end, and `S` lines each segment's stamps (arrival before the Q barrier, Q ready,
epilogue done), pages and whether it is a split piece. All times in µs from the first CTA start.

    exp111_trace.py LOG [LABEL]
"""
import statistics as st, sys


def main(path, label=""):
    ctas, segs = {}, []
    for line in open(path):
        f = line.split()
        if not f:
            continue
        if f[0] == "C" and len(f) == 7:
            ctas[int(f[1])] = (int(f[4]), int(f[5]), int(f[6]))
        elif f[0] == "S" and len(f) == 8:
            segs.append((int(f[1]), int(f[2]), int(f[3]), int(f[4]), int(f[5]), int(f[6]), int(f[7])))
    if not ctas:
        print(label, "no trace")
        return
    t0 = min(c[0] for c in ctas.values())
    us = lambda t: (t - t0) / 1000.0
    ends = sorted(us(c[1]) for c in ctas.values())
    span = ends[-1]
    tail = sum(span - e for e in ends) / (len(ends) * span)
    first = [s for s in segs if s[1] == 0]
    later = [s for s in segs if s[1] > 0]
    qwait = lambda ss: st.median((s[3] - s[2]) / 1000.0 for s in ss) if ss else float("nan")
    start_q = st.median(us(s[3]) - us(ctas[s[0]][0]) for s in first)
    print(f"{label}: {len(ctas)} CTAs, {len(segs)} segments ({sum(s[6] for s in segs)} split pieces), "
          f"pages {sum(s[5] for s in segs)}")
    print(f"  CTA end min / median / max: {ends[0]:.1f} / {st.median(ends):.1f} / {span:.1f} us; "
          f"idle tail {100 * tail:.1f}% of CTA-time")
    print(f"  first Q ready after CTA start {start_q:.2f} us; Q wait later segments {qwait(later):.2f} us")
    for name, ss in (("whole", [s for s in segs if not s[6]]), ("split", [s for s in segs if s[6]])):
        if len(ss) < 3:
            continue
        x = [s[5] for s in ss]
        y = [(s[4] - s[3]) / 1000.0 for s in ss]
        mx, my = st.mean(x), st.mean(y)
        vx = sum((a - mx) ** 2 for a in x)
        b = sum((a - mx) * (c - my) for a, c in zip(x, y)) / vx if vx else float("nan")
        print(f"  {name:5} segments: {len(ss):3}, Q-ready to epilogue done = {my - b * mx:.2f} + "
              f"{b:.3f} x pages us")
    # Per CTA: busy = sum of its segments' pages at the fitted rate, the rest overhead.
    per = {}
    for s in segs:
        p = per.setdefault(s[0], [0, 0, 0.0])
        p[0] += s[5]
        p[1] += 1
        p[2] += (s[3] - s[2]) / 1000.0
    byseg = {}
    for cta, (pages, n, qw) in per.items():
        byseg.setdefault(n, []).append((us(ctas[cta][1]), pages, qw))
    for n in sorted(byseg):
        v = byseg[n]
        print(f"  CTAs with {n} segments: {len(v):3}, end median {st.median(a for a, _, _ in v):.1f} us, "
              f"pages median {st.median(b for _, b, _ in v)}, Q waits {st.median(c for _, _, c in v):.2f} us")


if __name__ == "__main__":
    main(*sys.argv[1:])
