// Combine kernel: merges the fp32 partials of split sequences into out/lse, and writes the rows
// of empty sequences (which no part visits): out = 0, lse = +inf.
//
// Which sequences: a split sequence's last piece is the first segment of exactly one part, whose
// record names it (sched::Field::kCombineBatch). CTA column x of the grid scans the records of
// parts x, x + gridDim.x, ... in parallel and merges what they name. The rows shape has a column
// per part (at most one merge per CTA); the slots shape, for batch <= parts / 4, one per
// sequence.
//
// How (Shape): a warp covers kColsPerWarp columns of one row for every kSlotGroups-th slot; the
// kSlotGroups warps of a row sum their partials in group order. Three shapes, chosen on the host
// (launch_combine):
//   RowsShape      4 rows per CTA, a warp per row over all 512 columns, slots walked in order:
//                  many sequences, each in a few pieces (the common case);
//   SlotsShape     1 row and 128 columns per CTA, 8 slot groups: few sequences, each in many
//                  pieces (a single long sequence), where the slots must be read in parallel,
//                  when its grid fits in one wave of CTAs;
//   RowPairsShape  2 rows per CTA, 4 slot groups over all 512 columns: few sequences whose
//                  SlotsShape grid would take several waves (many rows per KV head).
// After reading its slots, a warp drops their lines from L2 (discard_l2_line): the partials are
// scratch, and without that, those the KV stream evicted were written back to memory during the
// next split kernel.
// All reductions have a fixed order, so results are bitwise reproducible (no atomics decide a
// value; the shared hit counter only orders independent sequences).
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cmath>
#include <cstdint>

#include "kernels/common/launch.h"
#include "kernels/common/ptx.h"
#include "kernels/common/segments.h"
#include "kernels/params.h"
#include "scheduler/schedule.h"

namespace flash_mla::combine {

inline constexpr int kHeadDimV = 512;

template <int kRowsPerCta_, int kColChunks_, int kSlotGroups_>
struct Shape {
  static constexpr int kRowsPerCta = kRowsPerCta_;
  static constexpr int kColChunks = kColChunks_;
  static constexpr int kSlotGroups = kSlotGroups_;
  static constexpr int kColsPerWarp = kHeadDimV / kColChunks;
  static constexpr int kVecsPerLane = kColsPerWarp / (32 * 4);  // float4 per lane per slot
  static constexpr int kWarps = kRowsPerCta * kSlotGroups;
  static constexpr int kThreads = 32 * kWarps;
  static constexpr int kMaxHits = 64;  // parts one CTA column can own per launch chunk
  static_assert(kColsPerWarp % 128 == 0, "a lane loads whole float4 vectors");
};
using RowsShape = Shape<4, 1, 1>;
using SlotsShape = Shape<1, 4, 8>;
using RowPairsShape = Shape<2, 1, 4>;

template <class Element>
__device__ __forceinline__ void store4(Element* dst, float4 v) {
  uint2 packed;
  packed.x = ptx::pack2<Element>(v.x, v.y);
  packed.y = ptx::pack2<Element>(v.z, v.w);
  *reinterpret_cast<uint2*>(dst) = packed;
}

// Max or sum over the kSlotGroups warps of one row, fixed order.
template <class S, bool kMax>
__device__ __forceinline__ float row_reduce(float v, float* scratch, int row_in_cta, int group) {
#pragma unroll
  for (int o = 16; o > 0; o /= 2) {
    const float other = __shfl_xor_sync(0xffffffffu, v, o);
    v = kMax ? fmaxf(v, other) : v + other;
  }
  if constexpr (S::kSlotGroups == 1) {
    return v;
  } else {
    __syncthreads();  // scratch may still be read by a previous reduction
    if (threadIdx.x % 32 == 0) scratch[row_in_cta * S::kSlotGroups + group] = v;
    __syncthreads();
    float r = scratch[row_in_cta * S::kSlotGroups];
#pragma unroll
    for (int k = 1; k < S::kSlotGroups; ++k) {
      const float x = scratch[row_in_cta * S::kSlotGroups + k];
      r = kMax ? fmaxf(r, x) : r + x;
    }
    return r;
  }
}

// This warp alone read its columns of the slot rows of its group, and nothing reads them again:
// drop their 128-byte lines from L2 so that they are never written back to memory.
template <class S, class AccumRow>
__device__ __forceinline__ void discard_slot_rows(const DecodeParams& p, int group, int count,
                                                  int lane, AccumRow accum_row) {
  constexpr int kLinesPerRow = S::kColsPerWarp / 32;  // 32 floats a line
  if (lane >= kLinesPerRow) return;
  const float* line = p.o_accum + (blockIdx.z % S::kColChunks) * S::kColsPerWarp + lane * 32;
#pragma unroll 1
  for (int s = group; s < count; s += S::kSlotGroups) {
    ptx::discard_l2_line(line + accum_row(s) * kHeadDimV);
  }
}

template <class Element, class S>
__global__ void __launch_bounds__(S::kThreads) combine_kernel(const __grid_constant__ DecodeParams p) {
  __shared__ float4 group_sums[S::kRowsPerCta][S::kSlotGroups][32][S::kVecsPerLane];
  __shared__ float scratch[S::kRowsPerCta * S::kSlotGroups];
  __shared__ int hits[S::kMaxHits];
  __shared__ int num_hits;
  extern __shared__ float weights[];  // [kRowsPerCta][num_slots]

  // Launched as a dependent of the split kernel: nothing of its output is read before this. The
  // next kernel in the stream may then be scheduled (its own griddep_wait orders its reads).
  ptx::griddep_wait();
  ptx::griddep_launch_dependents();
  const int lane = threadIdx.x % 32;
  const int warp = threadIdx.x / 32;
  const int row_in_cta = warp / S::kSlotGroups;
  const int group = warp % S::kSlotGroups;
  const int row = blockIdx.y * S::kRowsPerCta + row_in_cta;
  const int g = blockIdx.z / S::kColChunks;
  const int col0 = (blockIdx.z % S::kColChunks) * S::kColsPerWarp + lane * 4;
  const bool row_valid = row < p.rows_per_kv;
  // Partial rows are 2 KiB apart, so their lines are whole when the workspace is 128-byte aligned
  // (the API asks only for 16).
  const bool discard_partials = (reinterpret_cast<uintptr_t>(p.o_accum) & 127) == 0;
  const int i = row / p.heads_per_kv;
  const int h = g * p.heads_per_kv + row % p.heads_per_kv;
  auto out_at = [&](int b) {
    return static_cast<Element*>(p.out) + b * p.out_batch_stride + i * p.out_seq_stride +
           h * p.out_head_stride + col0;
  };
  auto lse_at = [&](int b) {
    return p.lse + b * p.lse_batch_stride + h * p.lse_head_stride + i * p.lse_seq_stride;
  };
  auto write_empty_row = [&](int b) {
#pragma unroll
    for (int v = 0; v < S::kVecsPerLane; ++v) store4<Element>(out_at(b) + v * 128, make_float4(0.f, 0.f, 0.f, 0.f));
    if (lane == 0 && blockIdx.z % S::kColChunks == 0) *lse_at(b) = INFINITY;
  };

  // Empty sequences of this CTA column, one warp each (slot group 0 of each row).
  if (row_valid && group == 0) {
    for (int b = blockIdx.x; b < p.batch; b += gridDim.x) {
      if (p.cache_seqlens[b] <= 0) write_empty_row(b);
    }
  }

  for (int base = blockIdx.x; base < p.num_sm_parts; base += gridDim.x * S::kMaxHits) {
    // Parts base, base + gridDim.x, ... (kMaxHits of them), scanned in parallel.
    if (threadIdx.x == 0) num_hits = 0;
    __syncthreads();
    for (int k = threadIdx.x; k < S::kMaxHits; k += S::kThreads) {
      const int part = base + k * gridDim.x;
      if (part >= p.num_sm_parts) break;
      const int b = p.metadata[part * sched::kNumFields + static_cast<int>(sched::Field::kCombineBatch)];
      if (b >= 0 && b < p.batch) hits[atomicAdd(&num_hits, 1)] = b;
    }
    __syncthreads();
    const int n_hits = num_hits;
    for (int hit = 0; hit < n_hits; ++hit) {
      const int b = hits[hit];
      const int first = p.num_splits[b];
      const int count = p.num_splits[b + 1] - first;
      if (count <= 0 || first + count > p.num_slots) continue;  // inconsistent metadata
      auto accum_row = [&](int s) { return workspace_row(p, first + s, g, row); };
      float* w_row = weights + row_in_cta * p.num_slots;
      const int t_row = group * 32 + lane;  // thread index within the row's warps
      constexpr int kRowThreads = 32 * S::kSlotGroups;

      float local_max = -INFINITY;
      if (row_valid) {
        for (int s = t_row; s < count; s += kRowThreads) local_max = fmaxf(local_max, p.lse_accum[accum_row(s)]);
      }
      const float lse_max = row_reduce<S, true>(local_max, scratch, row_in_cta, group);
      float local_sum = 0.f;
      if (row_valid && lse_max != -INFINITY) {
        for (int s = t_row; s < count; s += kRowThreads) local_sum += expf(p.lse_accum[accum_row(s)] - lse_max);
      }
      const float lse = lse_max + logf(row_reduce<S, false>(local_sum, scratch, row_in_cta, group));
      if (row_valid && lse_max != -INFINITY) {
        for (int s = t_row; s < count; s += kRowThreads) w_row[s] = expf(p.lse_accum[accum_row(s)] - lse);
      }
      __syncthreads();

      float4 acc[S::kVecsPerLane];
#pragma unroll
      for (int v = 0; v < S::kVecsPerLane; ++v) acc[v] = make_float4(0.f, 0.f, 0.f, 0.f);
      if (row_valid && lse_max != -INFINITY) {
        const float* src = p.o_accum + col0;
#pragma unroll 2
        for (int s = group; s < count; s += S::kSlotGroups) {
          const float w = w_row[s];
          const float* slot = src + accum_row(s) * kHeadDimV;
#pragma unroll
          for (int v = 0; v < S::kVecsPerLane; ++v) {
            const float4 x = *reinterpret_cast<const float4*>(slot + v * 128);
            acc[v].x += w * x.x; acc[v].y += w * x.y; acc[v].z += w * x.z; acc[v].w += w * x.w;
          }
        }
      }
      __syncwarp();  // every lane's loads are done before any lane's discard
      if (row_valid && discard_partials) discard_slot_rows<S>(p, group, count, lane, accum_row);
      if constexpr (S::kSlotGroups > 1) {
#pragma unroll
        for (int v = 0; v < S::kVecsPerLane; ++v) group_sums[row_in_cta][group][lane][v] = acc[v];
        __syncthreads();
        if (group == 0) {
#pragma unroll
          for (int v = 0; v < S::kVecsPerLane; ++v) {
            acc[v] = group_sums[row_in_cta][0][lane][v];
#pragma unroll
            for (int k = 1; k < S::kSlotGroups; ++k) {
              const float4 x = group_sums[row_in_cta][k][lane][v];
              acc[v].x += x.x; acc[v].y += x.y; acc[v].z += x.z; acc[v].w += x.w;
            }
          }
        }
      }
      if (row_valid && group == 0) {
        if (lse_max == -INFINITY) {  // no valid key in any piece
          write_empty_row(b);
        } else {
#pragma unroll
          for (int v = 0; v < S::kVecsPerLane; ++v) store4<Element>(out_at(b) + v * 128, acc[v]);
          if (lane == 0 && blockIdx.z % S::kColChunks == 0) *lse_at(b) = lse;
        }
      }
      __syncthreads();  // weights and group sums are reused by the next hit
    }
    __syncthreads();  // every thread has read num_hits before thread 0 resets it
  }
}

// Few sequences, each split into many pieces (at least about 4 each with equal lengths).
inline bool few_sequences(const DecodeParams& p) { return 4 * p.batch <= p.num_sm_parts; }

template <class Element, class S>
cudaError_t launch_shape(const DecodeParams& p, int columns, bool dependent, cudaStream_t stream) {
  const dim3 grid(columns, (p.rows_per_kv + S::kRowsPerCta - 1) / S::kRowsPerCta,
                  p.num_heads_kv * S::kColChunks);
  const size_t smem = size_t(S::kRowsPerCta) * p.num_slots * sizeof(float);
  auto* kernel = combine_kernel<Element, S>;
  if (smem > 48 * 1024) {
    const cudaError_t err = cudaFuncSetAttribute(
        kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(smem));
    if (err != cudaSuccess) return err;
  }
  return launch_kernel(kernel, grid, dim3(S::kThreads), smem, stream, dependent, p);
}

// CTAs of the slots shape resident on one SM. Its registers bound that (42 a thread, 256
// threads); its shared memory, 4.4 KiB plus 4 bytes per slot, does not, so none is asked for.
template <class Element>
cudaError_t slots_shape_occupancy(int* ctas_per_sm) {
  return cudaOccupancyMaxActiveBlocksPerMultiprocessor(
      ctas_per_sm, combine_kernel<Element, SlotsShape>, SlotsShape::kThreads, 0);
}

// `dependent`: launched as a programmatic dependent of the split kernel (a Hopper one, whose
// completion is the trigger), so its launch overlaps the split kernel's end. `slots_wave`: CTAs
// of the slots shape the device runs at once (SMs x slots_shape_occupancy).
template <class Element>
cudaError_t launch_combine(const DecodeParams& p, int slots_wave, bool dependent,
                           cudaStream_t stream) {
  // Many sequences: a column per part, so no CTA merges two sequences one after the other (with
  // min(parts, batch) columns, columns 0-3 of a 132-part, 128-sequence call did).
  if (!few_sequences(p)) {
    return launch_shape<Element, RowsShape>(p, p.num_sm_parts, dependent, stream);
  }
  // Few sequences: a column per sequence. The slots shape reads a row's slots with the most
  // warps, but takes a CTA per row and column chunk: beyond one wave of CTAs its later waves
  // cost more than the parallel reads gain (b = 8, 128 rows: 4096 CTAs, 23% slower than
  // RowPairsShape; perf-notes "The combine kernel: partials dropped from L2, and a shape for
  // few sequences").
  const int64_t slots_ctas =
      int64_t(p.batch) * p.rows_per_kv * p.num_heads_kv * SlotsShape::kColChunks;
  if (slots_ctas <= slots_wave) {
    return launch_shape<Element, SlotsShape>(p, p.batch, dependent, stream);
  }
  return launch_shape<Element, RowPairsShape>(p, p.batch, dependent, stream);
}

}  // namespace flash_mla::combine
