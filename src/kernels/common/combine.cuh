// Combine kernels: merge the fp32 partials of split sequences into out/lse, and write the rows
// of empty sequences (which no part visits): out = 0, lse = +inf.
//
// Which sequences, many of them (4 b > parts): a split sequence's last piece is the first
// segment of exactly one part, whose record names it (sched::Field::kCombineBatch). CTA column x
// of combine_kernel merges what part x's record names: RowsShape, a column per part, so at most
// one merge per CTA.
// Few sequences (4 b <= parts): combine_adaptive_kernel, a grid of at most one wave over a work
// list that every CTA derives from num_splits, with a shape chosen per sequence by its number of
// pieces (below; launch_combine sizes the grid).
//
// How (Shape): a warp covers kColsPerWarp columns of one row for every kSlotGroups-th slot; the
// kSlotGroups warps of a row sum their partials in group order (merge_rows).
//   RowsShape          4 rows per CTA, a warp per row over all 512 columns, slots in order;
//   AdaptiveRowsShape  the same with 8 rows (a sequence in at most kSerialSlots pieces);
//   SlotsShape         1 row and 128 columns per CTA, 8 slot groups: a sequence in more pieces,
//                      whose slots must be read in parallel, when the whole list fits the grid;
//   RowPairsShape      2 rows per CTA, 4 slot groups over all 512 columns: more pieces, when
//                      the slots shape's items would not fit the grid.
// The slots' weights are cached in shared memory (a row's num_slots floats); where that does not
// fit (thousands of parts, which the caller may choose), the rows shape recomputes each weight
// where it is used, and few sequences take the rows shape too.
// After reading its slots, a warp drops their lines from L2 (discard_l2_line): the partials are
// scratch, and without that, those the KV stream evicted were written back to memory during the
// next split kernel.
// All reductions have a fixed order, so results are bitwise reproducible (no atomics decide a
// value; which CTA merges an item of the adaptive kernel's list does not change its result).
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>

#include "kernels/common/combine.h"
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
  static_assert(kColsPerWarp % 128 == 0, "a lane loads whole float4 vectors");
};
using RowsShape = Shape<4, 1, 1>;
using SlotsShape = Shape<1, 4, 8>;
using RowPairsShape = Shape<2, 1, 4>;

// CTAs (or work items) that cover m rows with S::kRowsPerCta each.
template <class S>
__host__ __device__ constexpr int row_blocks(int m) {
  return (m + S::kRowsPerCta - 1) / S::kRowsPerCta;
}

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
                                                  int chunk, int lane, AccumRow accum_row) {
  constexpr int kLinesPerRow = S::kColsPerWarp / 32;  // 32 floats a line
  if (lane >= kLinesPerRow) return;
  const float* line = p.o_accum + chunk * S::kColsPerWarp + lane * 32;
#pragma unroll 1
  for (int s = group; s < count; s += S::kSlotGroups) {
    ptx::discard_l2_line(line + accum_row(s) * kHeadDimV);
  }
}

// Writes this lane's columns of fused row `row` (KV head g, column chunk `chunk`) of sequence b:
// out from `acc`, and lse from the chunk-0 warp's lane 0.
template <class Element, class S>
__device__ __forceinline__ void write_row(const DecodeParams& p, int b, int g, int row, int chunk,
                                          int lane, const float4 (&acc)[S::kVecsPerLane],
                                          float lse) {
  Element* out = static_cast<Element*>(p.out) + out_offset(p, b, g, row) +
                 chunk * S::kColsPerWarp + lane * 4;
#pragma unroll
  for (int v = 0; v < S::kVecsPerLane; ++v) store4<Element>(out + v * 128, acc[v]);
  if (lane == 0 && chunk == 0) p.lse[lse_offset(p, b, g, row)] = lse;
}

// A row with no valid key: out = 0, lse = +inf.
template <class Element, class S>
__device__ __forceinline__ void write_empty_row(const DecodeParams& p, int b, int g, int row,
                                                int chunk, int lane) {
  float4 zero[S::kVecsPerLane];
#pragma unroll
  for (int v = 0; v < S::kVecsPerLane; ++v) zero[v] = make_float4(0.f, 0.f, 0.f, 0.f);
  write_row<Element, S>(p, b, g, row, chunk, lane, zero, INFINITY);
}

// Where one warp of merge_rows works: its lane, the CTA row and slot group it belongs to, and
// whether that row exists.
template <class S>
struct MergeLane {
  int lane, row_in_cta, group, row;
  bool row_valid;
  __device__ MergeLane(int row_base, int rows_per_kv)
      : lane(threadIdx.x % 32),
        row_in_cta(threadIdx.x / 32 / S::kSlotGroups),
        group(threadIdx.x / 32 % S::kSlotGroups),
        row(row_base + row_in_cta),
        row_valid(row < rows_per_kv) {}
  __device__ int row_thread() const { return group * 32 + lane; }  // within the row's warps
  static constexpr int kRowThreads = 32 * S::kSlotGroups;
};

// The merged lse of one row (fixed-order reductions over the row's warps): the largest slot lse
// and log of the sum of exp(slot lse - largest); .max is -inf when no piece has a valid key.
struct RowLse {
  float max, lse;
};
template <class S, class AccumRow>
__device__ __forceinline__ RowLse merged_lse(const DecodeParams& p, const MergeLane<S>& at,
                                             int count, AccumRow accum_row, float* scratch) {
  float local_max = -INFINITY;
  if (at.row_valid) {
    for (int s = at.row_thread(); s < count; s += at.kRowThreads) {
      local_max = fmaxf(local_max, p.lse_accum[accum_row(s)]);
    }
  }
  const float lse_max = row_reduce<S, true>(local_max, scratch, at.row_in_cta, at.group);
  float local_sum = 0.f;
  if (at.row_valid && lse_max != -INFINITY) {
    for (int s = at.row_thread(); s < count; s += at.kRowThreads) {
      local_sum += expf(p.lse_accum[accum_row(s)] - lse_max);
    }
  }
  const float sum = row_reduce<S, false>(local_sum, scratch, at.row_in_cta, at.group);
  return {lse_max, lse_max + logf(sum)};
}

// acc = sum over this warp's slots (every kSlotGroups-th from its group, in order) of
// weight(s) x the slot's columns of this lane.
template <class S, class AccumRow, class Weight>
__device__ __forceinline__ void add_slots(const DecodeParams& p, const MergeLane<S>& at, int count,
                                          int chunk, AccumRow accum_row, Weight weight,
                                          float4 (&acc)[S::kVecsPerLane]) {
  constexpr int kVecStride = 32 * 4;  // floats between a lane's float4 vectors of one slot row
  const float* src = p.o_accum + chunk * S::kColsPerWarp + at.lane * 4;
#pragma unroll 2
  for (int s = at.group; s < count; s += S::kSlotGroups) {
    const float w = weight(s);
    const float* slot = src + accum_row(s) * kHeadDimV;
#pragma unroll
    for (int v = 0; v < S::kVecsPerLane; ++v) {
      const float4 x = *reinterpret_cast<const float4*>(slot + v * kVecStride);
      acc[v].x += w * x.x; acc[v].y += w * x.y; acc[v].z += w * x.z; acc[v].w += w * x.w;
    }
  }
}

// Slot group 0's acc becomes the sum of every group's, added in group order.
template <class S>
__device__ __forceinline__ void sum_slot_groups(const MergeLane<S>& at,
                                                float4 (&acc)[S::kVecsPerLane]) {
  if constexpr (S::kSlotGroups > 1) {
    __shared__ float4 group_sums[S::kRowsPerCta][S::kSlotGroups][32][S::kVecsPerLane];
#pragma unroll
    for (int v = 0; v < S::kVecsPerLane; ++v) {
      group_sums[at.row_in_cta][at.group][at.lane][v] = acc[v];
    }
    __syncthreads();
    if (at.group == 0) {
#pragma unroll
      for (int v = 0; v < S::kVecsPerLane; ++v) {
        acc[v] = group_sums[at.row_in_cta][0][at.lane][v];
#pragma unroll
        for (int k = 1; k < S::kSlotGroups; ++k) {
          const float4 x = group_sums[at.row_in_cta][k][at.lane][v];
          acc[v].x += x.x; acc[v].y += x.y; acc[v].z += x.z; acc[v].w += x.w;
        }
      }
    }
  }
}

// Merges the slots first .. first + count - 1 of sequence b into out/lse for the CTA's rows
// row_base .. row_base + kRowsPerCta - 1 of KV head g, column chunk `chunk`. Every thread of the
// CTA calls it (barriers inside). kCachedWeights: the slots' weights are computed once into
// `weights` (kRowsPerCta x num_slots floats); otherwise (when that would not fit in shared
// memory: num_sm_parts is the caller's) each is recomputed where it is used.
template <class Element, class S, bool kCachedWeights = true>
__device__ __forceinline__ void merge_rows(const DecodeParams& p, int b, int first, int count,
                                           int row_base, int g, int chunk, float* weights) {
  __shared__ float scratch[S::kRowsPerCta * S::kSlotGroups];
  const MergeLane<S> at(row_base, p.rows_per_kv);
  // Partial rows are 2 KiB apart, so their lines are whole when the workspace is 128-byte aligned
  // (the API asks only for 16).
  const bool discard_partials = (reinterpret_cast<uintptr_t>(p.o_accum) & 127) == 0;
  auto accum_row = [&](int s) { return workspace_row(p, first + s, g, at.row); };

  const RowLse lse = merged_lse(p, at, count, accum_row, scratch);
  const bool any_key = at.row_valid && lse.max != -INFINITY;
  auto weight = [&](int s) { return expf(p.lse_accum[accum_row(s)] - lse.lse); };
  float* w_row = weights + at.row_in_cta * p.num_slots;
  if constexpr (kCachedWeights) {
    if (any_key) {
      for (int s = at.row_thread(); s < count; s += at.kRowThreads) w_row[s] = weight(s);
    }
    __syncthreads();
  }

  float4 acc[S::kVecsPerLane];
#pragma unroll
  for (int v = 0; v < S::kVecsPerLane; ++v) acc[v] = make_float4(0.f, 0.f, 0.f, 0.f);
  if (any_key) {
    if constexpr (kCachedWeights) {
      add_slots(p, at, count, chunk, accum_row, [&](int s) { return w_row[s]; }, acc);
    } else {
      add_slots(p, at, count, chunk, accum_row, weight, acc);
    }
  }
  __syncwarp();  // every lane's loads are done before any lane's discard
  if (at.row_valid && discard_partials) {
    discard_slot_rows<S>(p, at.group, count, chunk, at.lane, accum_row);
  }
  sum_slot_groups(at, acc);
  if (at.row_valid && at.group == 0) {
    if (lse.max == -INFINITY) {  // no valid key in any piece
      write_empty_row<Element, S>(p, b, g, at.row, chunk, at.lane);
    } else {
      write_row<Element, S>(p, b, g, at.row, chunk, at.lane, acc, lse.lse);
    }
  }
  __syncthreads();  // weights and group sums are reused by the next merge
}

// Waits until the split kernel has completed and its writes are visible; then lets the next
// kernel in the stream be scheduled (its own griddep_wait orders its reads).
__device__ __forceinline__ void wait_for_split() {
  ptx::griddep_wait();
  ptx::griddep_launch_dependents();
}

// Many sequences: CTA column x (a column per part, launch_shape) merges the sequence that part
// x's record names, if any, for its rows (blockIdx.y) and column chunk and KV head (blockIdx.z).
template <class Element, class S, bool kCachedWeights = true>
__global__ void __launch_bounds__(S::kThreads) combine_kernel(const __grid_constant__ DecodeParams p) {
  extern __shared__ float weights[];  // [kRowsPerCta][num_slots]

  // Launched as a dependent of the split kernel, possibly while it runs (when nothing is split
  // the split kernel signals at its start). Before griddep_wait this reads only what came before
  // the split kernel: the cache lengths and the part record. A CTA with nothing to merge exits
  // without waiting, so with nothing split the grid retires during the split kernel; CTA
  // (0, 0, 0) always waits, so the kernel still completes after the split kernel (what follows
  // in the stream relies on that).
  const int lane = threadIdx.x % 32;
  const int warp = threadIdx.x / 32;
  const int row_base = blockIdx.y * S::kRowsPerCta;
  const int row = row_base + warp / S::kSlotGroups;
  const int g = blockIdx.z / S::kColChunks;
  const int chunk = blockIdx.z % S::kColChunks;

  // Empty sequences of this CTA column, one warp each (slot group 0 of each row). No part visits
  // them, so the split kernel writes none of these rows.
  if (row < p.rows_per_kv && warp % S::kSlotGroups == 0) {
    for (int b = blockIdx.x; b < p.batch; b += gridDim.x) {
      if (p.cache_seqlens[b] <= 0) write_empty_row<Element, S>(p, b, g, row, chunk, lane);
    }
  }

  const int b = combine_batch(p, blockIdx.x);
  if (b >= 0 || (blockIdx.x == 0 && blockIdx.y == 0 && blockIdx.z == 0)) wait_for_split();
  if (b < 0) return;
  const int first = p.num_splits[b];
  const int count = p.num_splits[b + 1] - first;
  if (count <= 0 || first + count > p.num_slots) return;  // inconsistent metadata
  merge_rows<Element, S, kCachedWeights>(p, b, first, count, row_base, g, chunk, weights);
}

// Few sequences: a one-wave grid walks a work list that every CTA derives from num_splits. A
// sequence in at most kSerialSlots pieces is merged 8 rows a CTA, a warp per row reading the
// slots in order (AdaptiveRowsShape). One in more pieces needs its slots read in parallel: one
// row and 128 columns a CTA, 8 slot groups (SlotsShape), when the whole list then fits in the
// grid; otherwise 2 rows a CTA, 4 slot groups (RowPairsShape). Items are dealt out round-robin;
// which CTA merges an item does not change its result.
inline constexpr int kSerialSlots = 8;
using AdaptiveRowsShape = Shape<8, 1, 1>;
inline constexpr int kAdaptiveThreads = 256;
static_assert(AdaptiveRowsShape::kThreads == kAdaptiveThreads &&
                  SlotsShape::kThreads == kAdaptiveThreads &&
                  RowPairsShape::kThreads == kAdaptiveThreads,
              "the adaptive kernel runs every shape with the same CTA");

// Work items of one sequence of `count` pieces (0: not split) for each KV head.
__device__ __forceinline__ int64_t items_per_head(const DecodeParams& p, int count, bool slots) {
  if (count <= 0) return 0;
  const int m = p.rows_per_kv;
  if (count <= kSerialSlots) return row_blocks<AdaptiveRowsShape>(m);
  return slots ? int64_t(m) * SlotsShape::kColChunks : row_blocks<RowPairsShape>(m);
}

// The work list, in dynamic shared memory: per sequence its first slot, its number of pieces
// and the inclusive prefix of the items; then the merges' weights
// (AdaptiveRowsShape::kRowsPerCta x num_slots floats).
struct WorkList {
  int64_t* item_end;
  int* first;
  int* count;
  float* weights;

  __device__ WorkList(int64_t* smem, int batch)
      : item_end(smem),
        first(reinterpret_cast<int*>(smem + batch)),
        count(first + batch),
        weights(reinterpret_cast<float*>(count + batch)) {}

  // The sequence whose items hold `item`, and the item's index within them.
  __device__ int sequence_of(int batch, int64_t item, int64_t* index) const {
    int lo = 0, hi = batch - 1;
    while (lo < hi) {
      const int mid = (lo + hi) / 2;
      if (item_end[mid] > item) hi = mid; else lo = mid + 1;
    }
    *index = item - (lo > 0 ? item_end[lo - 1] : 0);
    return lo;
  }
};

inline size_t adaptive_smem_bytes(const DecodeParams& p) {
  return size_t(p.batch) * (sizeof(int64_t) + 2 * sizeof(int)) +
         size_t(AdaptiveRowsShape::kRowsPerCta) * p.num_slots * sizeof(float);
}

// Every CTA fills the same list from num_splits. Returns whether the many-piece sequences take
// the slots shape: when the whole list then fits in the grid.
__device__ __forceinline__ bool build_work_list(const DecodeParams& p, const WorkList& list) {
  __shared__ unsigned long long slots_total;
  __shared__ bool slots_fit;
  const int lane = threadIdx.x % 32;
  if (threadIdx.x == 0) slots_total = 0;
  __syncthreads();
  unsigned long long mine = 0;
  for (int b = threadIdx.x; b < p.batch; b += kAdaptiveThreads) {
    const int first = p.num_splits[b];
    int count = p.num_splits[b + 1] - first;
    if (count <= 0 || first < 0 || first + count > p.num_slots) count = 0;  // inconsistent: skip
    list.first[b] = first;
    list.count[b] = count;
    mine += items_per_head(p, count, true) * p.num_heads_kv;
  }
#pragma unroll
  for (int o = 16; o > 0; o /= 2) mine += __shfl_xor_sync(0xffffffffu, mine, o);
  if (lane == 0 && mine != 0) atomicAdd(&slots_total, mine);  // one add a warp, not a thread
  __syncthreads();
  if (threadIdx.x == 0) slots_fit = slots_total <= gridDim.x;
  __syncthreads();
  const bool slots = slots_fit;
  // Inclusive prefix of the items, one warp, 32 sequences a step.
  if (threadIdx.x < 32) {
    int64_t carry = 0;
    for (int base = 0; base < p.batch; base += 32) {
      const int b = base + lane;
      int64_t v = b < p.batch ? items_per_head(p, list.count[b], slots) * p.num_heads_kv : 0;
#pragma unroll
      for (int o = 1; o < 32; o *= 2) {
        const int64_t up = __shfl_up_sync(0xffffffffu, v, o);
        if (lane >= o) v += up;
      }
      if (b < p.batch) list.item_end[b] = carry + v;
      carry += __shfl_sync(0xffffffffu, v, 31);
    }
  }
  __syncthreads();
  return slots;
}

// Item `index` of sequence b: its KV head, then its rows (and column chunk) in the shape the
// sequence's number of pieces gives.
template <class Element>
__device__ __forceinline__ void merge_item(const DecodeParams& p, const WorkList& list, int b,
                                           int64_t index, bool slots) {
  const int count = list.count[b];
  const int64_t per_head = items_per_head(p, count, slots);
  const int g = static_cast<int>(index / per_head);
  const int k = static_cast<int>(index % per_head);
  const int first = list.first[b];
  if (count <= kSerialSlots) {
    merge_rows<Element, AdaptiveRowsShape>(p, b, first, count, k * AdaptiveRowsShape::kRowsPerCta,
                                           g, 0, list.weights);
  } else if (slots) {
    merge_rows<Element, SlotsShape>(p, b, first, count, k / SlotsShape::kColChunks, g,
                                    k % SlotsShape::kColChunks, list.weights);
  } else {
    merge_rows<Element, RowPairsShape>(p, b, first, count, k * RowPairsShape::kRowsPerCta, g, 0,
                                       list.weights);
  }
}

// Empty sequences (no part visits them): all rows of sequence b by CTA b % gridDim.x, a warp a
// row.
template <class Element>
__device__ __forceinline__ void write_empty_sequences(const DecodeParams& p) {
  const int lane = threadIdx.x % 32;
  const int rows = p.rows_per_kv * p.num_heads_kv;
  for (int b = blockIdx.x; b < p.batch; b += gridDim.x) {
    if (p.cache_seqlens[b] > 0) continue;
    for (int r = threadIdx.x / 32; r < rows; r += kAdaptiveThreads / 32) {
      write_empty_row<Element, AdaptiveRowsShape>(p, b, r / p.rows_per_kv, r % p.rows_per_kv, 0,
                                                  lane);
    }
  }
}

template <class Element>
__global__ void __launch_bounds__(kAdaptiveThreads)
    combine_adaptive_kernel(const __grid_constant__ DecodeParams p) {
  extern __shared__ int64_t adaptive_smem[];
  // As combine_kernel: the work list comes from num_splits, which the split kernel does not
  // write; with nothing to merge only CTA 0 waits for the split kernel.
  const WorkList list(adaptive_smem, p.batch);
  const bool slots = build_work_list(p, list);
  const int64_t total = p.batch > 0 ? list.item_end[p.batch - 1] : 0;
  if (total > 0 || blockIdx.x == 0) wait_for_split();
  for (int64_t item = blockIdx.x; item < total; item += gridDim.x) {
    int64_t index = 0;
    const int b = list.sequence_of(p.batch, item, &index);
    merge_item<Element>(p, list, b, index, slots);
  }
  // After the merges, so that the length loads do not delay one.
  write_empty_sequences<Element>(p);
}

// Few sequences, each split into many pieces (at least about 4 each with equal lengths).
inline bool few_sequences(const DecodeParams& p) { return 4 * p.batch <= p.num_sm_parts; }

// The static shared memory of kernel kKernel, read from the runtime once.
template <auto kKernel>
cudaError_t static_smem_bytes(size_t* bytes) {
  static std::atomic<size_t> cached{SIZE_MAX};
  size_t value = cached.load(std::memory_order_relaxed);
  if (value == SIZE_MAX) {
    cudaFuncAttributes attr{};
    if (cudaError_t err = cudaFuncGetAttributes(&attr, kKernel); err != cudaSuccess) return err;
    value = attr.sharedSizeBytes;
    cached.store(value, std::memory_order_relaxed);
  }
  *bytes = value;
  return cudaSuccess;
}

inline constexpr size_t kDefaultSmemBytes = 48 * 1024;  // any launch, without an opt-in

// Whether kKernel can launch with `dynamic` bytes of dynamic shared memory next to its static
// arrays on a device whose CTAs may opt into `smem_optin` bytes in all; if so, and it needs more
// than the default 48 KiB, the kernel is opted in as far as the device allows (the same value
// from every caller, so concurrent calls agree).
template <auto kKernel>
cudaError_t fit_dynamic_smem(size_t dynamic, size_t smem_optin, bool* fits) {
  size_t fixed = 0;
  if (cudaError_t err = static_smem_bytes<kKernel>(&fixed); err != cudaSuccess) return err;
  *fits = fixed + dynamic <= smem_optin;
  if (!*fits || fixed + dynamic <= kDefaultSmemBytes) return cudaSuccess;
  return cudaFuncSetAttribute(kKernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                              static_cast<int>(smem_optin - fixed));
}

// The rows-shape grid: a column per part (combine_kernel relies on it). The slots' weights are
// cached in shared memory (kRowsPerCta x num_slots floats) where they fit, else recomputed per
// use.
template <class Element, class S>
cudaError_t launch_shape(const DecodeParams& p, size_t smem_optin, bool dependent,
                         cudaStream_t stream) {
  const dim3 grid(p.num_sm_parts, row_blocks<S>(p.rows_per_kv), p.num_heads_kv * S::kColChunks);
  const size_t smem = size_t(S::kRowsPerCta) * p.num_slots * sizeof(float);
  bool fits = false;
  if (cudaError_t err = fit_dynamic_smem<combine_kernel<Element, S>>(smem, smem_optin, &fits);
      err != cudaSuccess) {
    return err;
  }
  if (!fits) {
    return launch_kernel(combine_kernel<Element, S, false>, grid, dim3(S::kThreads), 0, stream,
                         dependent, p);
  }
  return launch_kernel(combine_kernel<Element, S>, grid, dim3(S::kThreads), smem, stream,
                       dependent, p);
}

// CTAs of the adaptive kernel resident on one SM. Its registers bound that (64 a thread, 256
// threads); its shared memory, 21 KiB plus 16 bytes per sequence and 32 per slot, does not at
// the part counts get_num_sm_parts gives, so none is asked for (with hundreds of parts the grid
// may take more than one wave).
template <class Element>
cudaError_t adaptive_occupancy(int* ctas_per_sm) {
  return cudaOccupancyMaxActiveBlocksPerMultiprocessor(
      ctas_per_sm, combine_adaptive_kernel<Element>, kAdaptiveThreads, 0);
}

// `dependent`: launched as a programmatic dependent of the split kernel (a Hopper one, which
// triggers it as its CTAs exit, or at their start when nothing is split), so its launch overlaps
// the split kernel's end, or all of it. `adaptive_wave`: CTAs of the adaptive kernel the device
// runs at once (SMs x adaptive_occupancy). `smem_optin`: the shared memory one CTA may opt into
// on this device.
template <class Element>
cudaError_t launch_combine(const DecodeParams& p, int adaptive_wave, size_t smem_optin,
                           bool dependent, cudaStream_t stream) {
  // Many sequences: a column per part, so no CTA merges two sequences one after the other (with
  // min(parts, batch) columns, columns 0-3 of a 132-part, 128-sequence call did).
  if (!few_sequences(p)) {
    return launch_shape<Element, RowsShape>(p, smem_optin, dependent, stream);
  }
  // Few sequences whose work list and weights would not fit in shared memory (thousands of
  // parts): the rows shape, which is correct for any batch.
  const size_t smem = adaptive_smem_bytes(p);
  bool fits = false;
  if (cudaError_t err = fit_dynamic_smem<combine_adaptive_kernel<Element>>(smem, smem_optin, &fits);
      err != cudaSuccess) {
    return err;
  }
  if (!fits) return launch_shape<Element, RowsShape>(p, smem_optin, dependent, stream);
  // Few sequences: the adaptive kernel, one CTA per item up to one wave. With every sequence in
  // the slots shape the items are b x h_kv x 4M; when that exceeds a wave, many-piece sequences
  // take row pairs, and no sequence has more items than b x h_kv x M / 2. Launching CTAs that
  // find no item cost 2.4 us at b = 2, 128 rows (perf-notes "The adaptive combine kernel").
  const int64_t heads = int64_t(p.batch) * p.num_heads_kv;
  const int64_t slots_items = heads * p.rows_per_kv * SlotsShape::kColChunks;
  const int64_t pairs_items = heads * row_blocks<RowPairsShape>(p.rows_per_kv);
  const int64_t wave = std::max(adaptive_wave, 1);
  const int64_t ctas = slots_items <= wave ? slots_items : std::min(pairs_items, wave);
  return launch_kernel(combine_adaptive_kernel<Element>,
                       dim3(static_cast<unsigned>(std::max<int64_t>(ctas, 1))),
                       dim3(kAdaptiveThreads), smem, stream, dependent, p);
}

}  // namespace flash_mla::combine
