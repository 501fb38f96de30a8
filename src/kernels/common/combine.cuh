// Combine kernel: merges the fp32 partials of split sequences into out/lse, and writes the rows
// of empty sequences (which no part visits): out = 0, lse = +inf.
//
// Grid: (num_sm_parts, M, h_kv * kColChunks). A split sequence's last piece is the first
// segment of exactly one part, whose record names it (sched::Field::kCombineBatch); so the grid
// scales with the parts, not with the batch, and at most one sequence per part is merged.
// CTA (part, row, g * kColChunks + chunk) merges 128 output columns of one row: 32 lanes of a
// float4 each, times kSlotGroups groups of warps that take every kSlotGroups-th slot, so a
// sequence split into hundreds of pieces is read by many loads in flight rather than one
// serial walk. Group partials are summed in group order and the log-sum-exp weights use a
// fixed reduction tree: results are bitwise reproducible (no atomics).
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cmath>
#include <cstdint>

#include "kernels/common/ptx.h"
#include "kernels/params.h"
#include "scheduler/schedule.h"

namespace flash_mla::combine {

inline constexpr int kHeadDimV = 512;
inline constexpr int kColsPerCta = 128;
inline constexpr int kColChunks = kHeadDimV / kColsPerCta;  // 4
inline constexpr int kVecs = kColsPerCta / 4;                // float4 lanes per slot: 32
inline constexpr int kSlotGroups = 8;
inline constexpr int kThreads = kVecs * kSlotGroups;         // 256
inline constexpr int kUnroll = 4;                            // slots in flight per thread
static_assert(kVecs == 32, "one warp covers the 128 columns of a slot");

template <class Element>
__device__ __forceinline__ void store4(Element* dst, float4 v) {
  uint2 packed;
  packed.x = ptx::pack2<Element>(v.x, v.y);
  packed.y = ptx::pack2<Element>(v.z, v.w);
  *reinterpret_cast<uint2*>(dst) = packed;
}

// Maximum and sum over the block in a fixed tree (identical order every run).
template <bool kMax>
__device__ __forceinline__ float block_reduce(float v, float* scratch) {
#pragma unroll
  for (int o = 16; o > 0; o /= 2) {
    const float other = __shfl_xor_sync(0xffffffffu, v, o);
    v = kMax ? fmaxf(v, other) : v + other;
  }
  const int warp = threadIdx.x / 32;
  __syncthreads();  // scratch may still be read by a previous reduction
  if (threadIdx.x % 32 == 0) scratch[warp] = v;
  __syncthreads();
  float r = scratch[0];
#pragma unroll
  for (int w = 1; w < kSlotGroups; ++w) r = kMax ? fmaxf(r, scratch[w]) : r + scratch[w];
  return r;
}

template <class Element>
__global__ void __launch_bounds__(kThreads) combine_kernel(const __grid_constant__ DecodeParams p) {
  __shared__ float4 group_sums[kSlotGroups][kVecs];
  __shared__ float scratch[kSlotGroups];
  extern __shared__ float weights[];  // [num_slots]

  const int part = blockIdx.x;
  const int row = blockIdx.y;
  const int g = blockIdx.z / kColChunks;
  const int chunk = blockIdx.z % kColChunks;
  const int vec = threadIdx.x % kVecs;
  const int group = threadIdx.x / kVecs;
  const int i = row / p.heads_per_kv;
  const int h = g * p.heads_per_kv + row % p.heads_per_kv;
  const int col = chunk * kColsPerCta + vec * 4;
  auto out_at = [&](int b) {
    return static_cast<Element*>(p.out) + b * p.out_batch_stride + i * p.out_seq_stride +
           h * p.out_head_stride + col;
  };
  auto lse_at = [&](int b) {
    return p.lse + b * p.lse_batch_stride + h * p.lse_head_stride + i * p.lse_seq_stride;
  };

  // Empty sequences: part x takes every gridDim.x-th one, a thread per sequence, so a large
  // batch costs each CTA about batch / (parts * 256) length reads.
  for (int e = part + threadIdx.x * gridDim.x; e < p.batch; e += kThreads * gridDim.x) {
    if (p.cache_seqlens[e] > 0) continue;
    Element* dst = out_at(e) - col + chunk * kColsPerCta;
    for (int v = 0; v < kVecs; ++v) store4<Element>(dst + v * 4, make_float4(0.f, 0.f, 0.f, 0.f));
    if (chunk == 0) *lse_at(e) = INFINITY;
  }

  const int b = p.metadata[part * sched::kNumFields + static_cast<int>(sched::Field::kCombineBatch)];
  if (b < 0 || b >= p.batch) return;
  const int first = p.num_splits[b];
  const int count = p.num_splits[b + 1] - first;
  if (count <= 0 || first + count > p.num_slots) return;  // inconsistent metadata: write nothing

  auto accum_row = [&](int s) {
    return (static_cast<int64_t>(first + s) * p.num_heads_kv + g) * p.rows_per_kv + row;
  };
  float local_max = -INFINITY;
  for (int s = threadIdx.x; s < count; s += kThreads) local_max = fmaxf(local_max, p.lse_accum[accum_row(s)]);
  const float lse_max = block_reduce<true>(local_max, scratch);
  if (lse_max == -INFINITY) {  // no valid key in any piece
    if (group == 0) {
      store4<Element>(out_at(b), make_float4(0.f, 0.f, 0.f, 0.f));
      if (chunk == 0 && vec == 0) *lse_at(b) = INFINITY;
    }
    return;
  }
  float local_sum = 0.f;
  for (int s = threadIdx.x; s < count; s += kThreads) local_sum += expf(p.lse_accum[accum_row(s)] - lse_max);
  const float lse = lse_max + logf(block_reduce<false>(local_sum, scratch));
  for (int s = threadIdx.x; s < count; s += kThreads) weights[s] = expf(p.lse_accum[accum_row(s)] - lse);
  __syncthreads();

  float4 acc = make_float4(0.f, 0.f, 0.f, 0.f);
  const float* src = p.o_accum + col;
  int s = group;
  for (; s + (kUnroll - 1) * kSlotGroups < count; s += kUnroll * kSlotGroups) {
    float4 v[kUnroll];
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      v[u] = *reinterpret_cast<const float4*>(src + accum_row(s + u * kSlotGroups) * kHeadDimV);
    }
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      const float w = weights[s + u * kSlotGroups];
      acc.x += w * v[u].x; acc.y += w * v[u].y; acc.z += w * v[u].z; acc.w += w * v[u].w;
    }
  }
  for (; s < count; s += kSlotGroups) {
    const float4 v = *reinterpret_cast<const float4*>(src + accum_row(s) * kHeadDimV);
    const float w = weights[s];
    acc.x += w * v.x; acc.y += w * v.y; acc.z += w * v.z; acc.w += w * v.w;
  }
  group_sums[group][vec] = acc;
  __syncthreads();
  if (group == 0) {
    float4 total = group_sums[0][vec];
#pragma unroll
    for (int k = 1; k < kSlotGroups; ++k) {
      const float4 v = group_sums[k][vec];
      total.x += v.x; total.y += v.y; total.z += v.z; total.w += v.w;
    }
    store4<Element>(out_at(b), total);
    if (chunk == 0 && vec == 0) *lse_at(b) = lse;
  }
}

template <class Element>
cudaError_t launch_combine(const DecodeParams& p, cudaStream_t stream) {
  const dim3 grid(p.num_sm_parts, p.rows_per_kv, p.num_heads_kv * kColChunks);
  const size_t smem = static_cast<size_t>(p.num_slots) * sizeof(float);
  auto* kernel = combine_kernel<Element>;
  if (smem > 48 * 1024) {
    const cudaError_t err =
        cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(smem));
    if (err != cudaSuccess) return err;
  }
  kernel<<<grid, kThreads, smem, stream>>>(p);
  return cudaGetLastError();
}

}  // namespace flash_mla::combine
