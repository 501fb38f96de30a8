#!/usr/bin/env python3
"""Writes src/kernels/sm90/wgmma_ops.inc: the wgmma wrappers whose operand lists (32 and 128
accumulator registers) are too long to write by hand. Run from the repository root."""


def ss_m64n(dt, n_cols):
    n = n_cols // 2
    regs = ", ".join(f"%{i}" for i in range(n))
    outs = ", ".join(f'"+f"(d[{i}])' for i in range(n))
    return f'''  asm volatile(
      "{{\\n.reg .pred p;\\nsetp.ne.b32 p, %{n+2}, 0;\\n"
      "wgmma.mma_async.sync.aligned.m64n{n_cols}k16.f32.{dt}.{dt} "
      "{{{regs}}}, %{n}, %{n+1}, p, 1, 1, 0, 0;\\n}}\\n"
      : {outs}
      : "l"(desc_a), "l"(desc_b), "r"(accumulate));'''


def rs_m64n256(dt):
    n = 128
    regs = ", ".join(f"%{i}" for i in range(n))
    outs = ", ".join(f'"+f"(d[{i}])' for i in range(n))
    return f'''  asm volatile(
      "{{\\n.reg .pred p;\\nsetp.ne.b32 p, %{n+5}, 0;\\n"
      "wgmma.mma_async.sync.aligned.m64n256k16.f32.{dt}.{dt} "
      "{{{regs}}}, {{%{n}, %{n+1}, %{n+2}, %{n+3}}}, %{n+4}, p, 1, 1, 1;\\n}}\\n"
      : {outs}
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(desc_b), "r"(accumulate));'''


def ss_m64n256(dt):
    n = 128
    regs = ", ".join(f"%{i}" for i in range(n))
    outs = ", ".join(f'"+f"(d[{i}])' for i in range(n))
    return f'''  asm volatile(
      "{{\\n.reg .pred p;\\nsetp.ne.b32 p, %{n+2}, 0;\\n"
      "wgmma.mma_async.sync.aligned.m64n256k16.f32.{dt}.{dt} "
      "{{{regs}}}, %{n}, %{n+1}, p, 1, 1, 0, 1;\\n}}\\n"
      : {outs}
      : "l"(desc_a), "l"(desc_b), "r"(accumulate));'''


def main():
    out = ['''// Written by scripts/gen_wgmma_ops.py (regenerate, do not edit): the wgmma forms whose
// operand lists are too long to write by hand.
// PTX ISA: "Asynchronous Warpgroup Level Matrix Multiply-Accumulate Instructions: wgmma.mma_async".
// Included by ptx_sm90.h only.
#pragma once
''']
    for name, dt in (("__nv_bfloat16", "bf16"), ("__half", "f16")):
        for n_cols in (32, 64):
            out.append(f'''// S = Q K^T step: D[64x{n_cols}] (+)= A[64x16] * B[16x{n_cols}], both operands from shared memory,
// K-major.
__device__ __forceinline__ void wgmma_ss_m64n{n_cols}k16(float (&d)[{n_cols // 2}], uint64_t desc_a,
                                                   uint64_t desc_b, uint32_t accumulate, {name}) {{
{ss_m64n(dt, n_cols)}
}}
''')
        out.append(f'''
// O += P V step: D[64x256] (+)= A[64x16] (registers) * B[16x256] (shared, MN-major: transposed).
__device__ __forceinline__ void wgmma_rs_m64n256k16(float (&d)[128], const uint32_t (&a)[4],
                                                    uint64_t desc_b, uint32_t accumulate, {name}) {{
{rs_m64n256(dt)}
}}
''')
        out.append(f'''// O += P V step with P from shared memory (K-major) and V MN-major (transposed).
__device__ __forceinline__ void wgmma_ss_m64n256k16(float (&d)[128], uint64_t desc_a,
                                                    uint64_t desc_b, uint32_t accumulate, {name}) {{
{ss_m64n256(dt)}
}}
''')
    with open("src/kernels/sm90/wgmma_ops.inc", "w") as f:
        f.write("\n".join(out))


if __name__ == "__main__":
    main()
