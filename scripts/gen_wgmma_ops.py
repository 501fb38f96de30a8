#!/usr/bin/env python3
"""Writes src/kernels/sm90/wgmma_ops.inc: the wgmma wrappers the Hopper kernel uses, whose
operand lists (16 and 128 accumulator registers) are too long to write by hand. Run from the
repository root."""

# (A source, shape N, transposed A, transposed B, what it computes). B always comes from a
# shared-memory descriptor; A from a descriptor ("ss") or from four registers per thread ("rs").
# A transposed (MN-major) A gets the suffix _ta.
WRAPPERS = (
    ("ss", 64, 0, 0, "S = Q K^T step: D[64x64] (+)= A[64x16] * B[16x64], both operands K-major."),
    ("ss", 256, 0, 1, "O += P V step, P from shared memory: D[64x256] (+)= A[64x16] (P, K-major) * "
                      "B[16x256] (V, MN-major: transposed)."),
    ("rs", 256, 0, 1, "O += P V step, P from registers (the accumulator layout of S, packed to "
                      "16-bit pairs): D[64x256] (+)= A[64x16] * B[16x256] (V transposed)."),
    # The narrow kernel computes the transposed products, tokens and channels along M:
    ("ss", 16, 0, 0, "S^T = K Q^T step for 16 query rows: D[64x16] (+)= A[64x16] (K) * B[16x16] "
                     "(Q^T), both K-major."),
    ("ss", 16, 1, 0, "O^T += V^T P^T step for 16 query rows: D[64x16] (+)= A[64x16] (V^T: "
                     "MN-major, transposed) * B[16x16] (P^T, K-major)."),
)
DTYPES = (("__nv_bfloat16", "bf16"), ("__half", "f16"))


def wrapper(src, n_cols, trans_a, trans_b, doc, name, dt):
    n = n_cols // 2  # fp32 accumulators per thread: 64 x n_cols over 128 threads
    regs = ", ".join(f"%{i}" for i in range(n))
    outs = ", ".join(f'"+f"(d[{i}])' for i in range(n))
    if src == "ss":
        a_param, a_operand, a_inputs, n_in = "uint64_t desc_a", f"%{n}", '"l"(desc_a)', 1
        trans = f"{trans_a}, {trans_b}"
    else:
        a_param = "const uint32_t (&a)[4]"
        a_operand = "{" + ", ".join(f"%{n + i}" for i in range(4)) + "}"
        a_inputs, n_in = ", ".join(f'"r"(a[{i}])' for i in range(4)), 4
        trans = f"{trans_b}"
    assert src == "ss" or trans_a == 0, "A from registers is never transposed"
    suffix = "_ta" if trans_a else ""
    return f'''// {doc}
__device__ __forceinline__ void wgmma_{src}_m64n{n_cols}k16{suffix}(float (&d)[{n}], {a_param},
                                                   uint64_t desc_b, uint32_t accumulate, {name}) {{
  asm volatile(
      "{{\\n.reg .pred p;\\nsetp.ne.b32 p, %{n + n_in + 1}, 0;\\n"
      "wgmma.mma_async.sync.aligned.m64n{n_cols}k16.f32.{dt}.{dt} "
      "{{{regs}}}, {a_operand}, %{n + n_in}, p, 1, 1, {trans};\\n}}\\n"
      : {outs}
      : {a_inputs}, "l"(desc_b), "r"(accumulate));
}}
'''


def main():
    out = ['''// Written by scripts/gen_wgmma_ops.py (regenerate, do not edit): the wgmma forms whose
// operand lists are too long to write by hand.
// PTX ISA: "Asynchronous Warpgroup Level Matrix Multiply-Accumulate Instructions: wgmma.mma_async".
// Included by ptx_sm90.h only.
#pragma once
''']
    for name, dt in DTYPES:
        for src, n_cols, trans_a, trans_b, doc in WRAPPERS:
            out.append(wrapper(src, n_cols, trans_a, trans_b, doc, name, dt))
    with open("src/kernels/sm90/wgmma_ops.inc", "w") as f:
        f.write("\n".join(out))


if __name__ == "__main__":
    main()
