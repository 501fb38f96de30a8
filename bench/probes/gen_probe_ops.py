#!/usr/bin/env python3
"""Writes bench/probes/probe_ops.inc: wgmma forms the probe needs beyond the kernels' own
(A from registers at N = 64; N = 128), with scripts/gen_wgmma_ops.py's generator."""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "scripts"))
from gen_wgmma_ops import wrapper  # noqa: E402

FORMS = (
    ("rs", 64, 0, 0, "S step with Q from registers: D[64x64] (+)= A[64x16] * B[16x64]."),
    ("ss", 128, 0, 0, "S step over two pages at once: D[64x128] (+)= A[64x16] * B[16x128]."),
)
out = ["// Written by bench/probes/gen_probe_ops.py (regenerate, do not edit).\n#pragma once\n"]
for src, n, ta, tb, doc in FORMS:
    out.append(wrapper(src, n, ta, tb, doc, "__nv_bfloat16", "bf16"))
with open(os.path.join(os.path.dirname(__file__), "probe_ops.inc"), "w") as f:
    f.write("\n".join(out))
