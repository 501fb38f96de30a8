#!/usr/bin/env python3
"""Writes src/kernels/sm90/wgmma_ops.inc: the wgmma wrappers the Hopper kernel uses, whose
operand lists (16 and 128 accumulator registers) are too long to write by hand. Run from the
repository root."""

# (shape N, transposed B, what it computes). Both operands come from shared-memory descriptors.
WRAPPERS = (
    (32, 0, "S = Q K^T step: D[64x32] (+)= A[64x16] * B[16x32], both operands K-major."),
    (256, 1, "O += P V step: D[64x256] (+)= A[64x16] (P, K-major) * B[16x256] (V, MN-major: "
             "transposed)."),
)
DTYPES = (("__nv_bfloat16", "bf16"), ("__half", "f16"))


def wrapper(n_cols, trans_b, doc, name, dt):
    n = n_cols // 2  # fp32 accumulators per thread: 64 x n_cols over 128 threads
    regs = ", ".join(f"%{i}" for i in range(n))
    outs = ", ".join(f'"+f"(d[{i}])' for i in range(n))
    return f'''// {doc}
__device__ __forceinline__ void wgmma_ss_m64n{n_cols}k16(float (&d)[{n}], uint64_t desc_a,
                                                   uint64_t desc_b, uint32_t accumulate, {name}) {{
  asm volatile(
      "{{\\n.reg .pred p;\\nsetp.ne.b32 p, %{n + 2}, 0;\\n"
      "wgmma.mma_async.sync.aligned.m64n{n_cols}k16.f32.{dt}.{dt} "
      "{{{regs}}}, %{n}, %{n + 1}, p, 1, 1, 0, {trans_b};\\n}}\\n"
      : {outs}
      : "l"(desc_a), "l"(desc_b), "r"(accumulate));
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
        for n_cols, trans_b, doc in WRAPPERS:
            out.append(wrapper(n_cols, trans_b, doc, name, dt))
    with open("src/kernels/sm90/wgmma_ops.inc", "w") as f:
        f.write("\n".join(out))


if __name__ == "__main__":
    main()
