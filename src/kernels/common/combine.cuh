// Combine kernel: merges the fp32 partials of split sequences into out/lse, in slot order, so
// the result is bitwise reproducible (no atomics). It also writes the rows of empty sequences,
// which no part of the schedule visits: out = 0, lse = +inf.
//
// Grid: (batch, h_kv, ceil(M / kRowsPerCta)); one warp per fused row, each lane 16 of the 512
// output columns as four float4 loads per slot (consecutive lanes, consecutive 16 bytes).
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cmath>
#include <cstdint>

#include "kernels/common/ptx.h"
#include "kernels/params.h"

namespace flash_mla::combine {

inline constexpr int kHeadDimV = 512;
inline constexpr int kRowsPerCta = 4;
inline constexpr int kThreads = 32 * kRowsPerCta;
inline constexpr int kColsPerLane = kHeadDimV / 32;        // 16
inline constexpr int kVecsPerLane = kColsPerLane / 4;      // float4 loads per slot
static_assert(kColsPerLane % 4 == 0, "lanes load float4 vectors");

template <class Element>
__device__ __forceinline__ void store_row(Element* dst, int lane, const float (&v)[kColsPerLane]) {
#pragma unroll
  for (int k = 0; k < kVecsPerLane; ++k) {
    const int col = k * 128 + lane * 4;
    uint2 packed;
    packed.x = ptx::pack2<Element>(v[4 * k], v[4 * k + 1]);
    packed.y = ptx::pack2<Element>(v[4 * k + 2], v[4 * k + 3]);
    *reinterpret_cast<uint2*>(dst + col) = packed;
  }
}

template <class Element>
__global__ void __launch_bounds__(kThreads) combine_kernel(const __grid_constant__ DecodeParams p) {
  const int b = blockIdx.x;
  const int g = blockIdx.y;
  const int lane = threadIdx.x % 32;
  const int row = blockIdx.z * kRowsPerCta + threadIdx.x / 32;
  if (row >= p.rows_per_kv) return;

  const int first = p.num_splits[b];
  int count = p.num_splits[b + 1] - first;
  const bool empty_sequence = p.cache_seqlens[b] <= 0;
  if (count <= 0 && !empty_sequence) return;  // the decode kernel wrote this row directly
  if (first + count > p.num_slots) count = 0;   // inconsistent metadata: treat as empty

  const int i = row / p.heads_per_kv;
  const int h = g * p.heads_per_kv + row % p.heads_per_kv;
  Element* out = static_cast<Element*>(p.out) + b * p.out_batch_stride + i * p.out_seq_stride +
                 h * p.out_head_stride;
  float* lse_out = p.lse + b * p.lse_batch_stride + h * p.lse_head_stride + i * p.lse_seq_stride;

  auto accum_row = [&](int s) {
    return (static_cast<int64_t>(first + s) * p.num_heads_kv + g) * p.rows_per_kv + row;
  };
  float lse_max = -INFINITY;
  for (int s = 0; s < count; ++s) lse_max = fmaxf(lse_max, p.lse_accum[accum_row(s)]);

  float acc[kColsPerLane] = {};
  if (lse_max == -INFINITY) {  // empty sequence, or no valid key in any piece
    store_row<Element>(out, lane, acc);
    if (lane == 0) *lse_out = INFINITY;
    return;
  }
  float sum = 0.f;
  for (int s = 0; s < count; ++s) sum += expf(p.lse_accum[accum_row(s)] - lse_max);
  const float lse = lse_max + logf(sum);

  for (int s = 0; s < count; ++s) {
    const float weight = expf(p.lse_accum[accum_row(s)] - lse);
    const float* src = p.o_accum + accum_row(s) * kHeadDimV;
#pragma unroll
    for (int k = 0; k < kVecsPerLane; ++k) {
      const float4 v = *reinterpret_cast<const float4*>(src + k * 128 + lane * 4);
      acc[4 * k] += weight * v.x;
      acc[4 * k + 1] += weight * v.y;
      acc[4 * k + 2] += weight * v.z;
      acc[4 * k + 3] += weight * v.w;
    }
  }
  store_row<Element>(out, lane, acc);
  if (lane == 0) *lse_out = lse;
}

template <class Element>
cudaError_t launch_combine(const DecodeParams& p, cudaStream_t stream) {
  const dim3 grid(p.batch, p.num_heads_kv, (p.rows_per_kv + kRowsPerCta - 1) / kRowsPerCta);
  combine_kernel<Element><<<grid, kThreads, 0, stream>>>(p);
  return cudaGetLastError();
}

}  // namespace flash_mla::combine
