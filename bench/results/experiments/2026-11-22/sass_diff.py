#!/usr/bin/env python3
"""Where two builds' SASS of the same kernels differ, register names aside (exp110).

    sass_diff.py A.sass B.sass [NAME_SUBSTRING]

A.sass and B.sass are `cuobjdump --dump-sass` of two builds of one translation unit. For each
function whose name contains NAME_SUBSTRING (default hopper_decode), both instruction lists are
normalised (registers, predicates and immediates replaced by placeholders, `.reuse` dropped) and
compared. Prints the lengths, the differing blocks and instructions, and how many of those lie
between the first and the last HGMMA (the consumers' hot code), with the first few blocks there.
cuobjdump runs on the lent GPU machine; locally it can come from the `nvidia-cuda-cuobjdump`
wheel on PyPI (a development tool only, not a dependency of the library).
"""
import difflib, re, sys


def functions(path):
    out, cur = {}, None
    for line in open(path):
        m = re.match(r"\s*Function : (\S+)", line)
        if m:
            cur = m.group(1)
            out[cur] = []
            continue
        m = re.match(r"\s*/\*([0-9a-f]{4,})\*/\s+(.*?);", line)
        if m and cur:
            ins = re.sub(r"0x[0-9a-f]+", "IMM", m.group(2))
            ins = re.sub(r"\bU?R\d+\b", "R", ins)
            ins = re.sub(r"\bU?P\d\b", "P", ins)
            out[cur].append(ins.replace(".reuse", ""))
    return out


def main(a_path, b_path, name="hopper_decode"):
    a_all, b_all = functions(a_path), functions(b_path)
    for fn, a in a_all.items():
        if name not in fn or fn not in b_all:
            continue
        b = b_all[fn]
        ops = [o for o in difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes()
               if o[0] != "equal"]
        hg = [i for i, x in enumerate(a) if "HGMMA" in x]
        inside = [o for o in ops if hg and hg[0] <= o[1] <= hg[-1]]
        print(f"{fn}\n  instructions {len(a)} / {len(b)}; differing blocks {len(ops)}, "
              f"instructions {sum(max(o[2] - o[1], o[4] - o[3]) for o in ops)}; "
              f"blocks between the first and last HGMMA: {len(inside)}")
        for o in inside[:5]:
            print(f"    {o[0]} {a[o[1]:o[2]][:3]} -> {b[o[3]:o[4]][:3]}")


if __name__ == "__main__":
    main(*sys.argv[1:])
