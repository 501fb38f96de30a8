// The wide Hopper kernel's epilogue: both consumers' row sums added, lse written, then out or
// the fp32 partials of a split piece staged over the Q tile and written by bulk copies
// (decode_kernel.cuh).
#pragma once

#include <cstdint>

#include "kernels/common/row_finish.h"
#include "kernels/common/segments.h"
#include "kernels/params.h"
#include "kernels/sm90/decode_math.cuh"
#include "kernels/sm90/decode_smem.cuh"
#include "kernels/sm90/ptx_sm90.h"

namespace flash_mla::sm90 {

// The output is staged through the Q tile's shared memory, which no wgmma reads after the last
// Q·Kᵀ of the segment, and written by bulk copies (the TMA unit) rather than by each thread's
// stores: 8-byte (fp32) or 4-byte (bf16/fp16) stores scatter every warp instruction over 8 rows.
// Each warp stages its own 16 rows in a 9 KiB slice of its consumer's half of the Q tile, so a
// __syncwarp orders its writes before its lanes issue the copies. A row slice is 512 bytes: a
// consumer's 256 output elements, or half of its 256 fp32 partials, so a split piece takes two
// rounds through the slice. Rows are padded (kStageRow*) so that a warp's stores hit distinct banks.
struct OutputStage {
  static constexpr int kWarps = Cfg::kWarpgroupThreads / 32;  // of a consumer
  static constexpr int kWarpRows = Cfg::kBlockM / kWarps;     // 16: the rows a warp holds
  static constexpr int kSliceBytes = 512;
  static constexpr int kPartialCols = kSliceBytes / int(sizeof(float));  // 128 a round
  static constexpr int kWarpBytes = int(Cfg::kQBytes) / (Cfg::kConsumers * kWarps);  // 9 KiB
  static constexpr int kStageRowPartial = kSliceBytes + 32;  // lane (r, q) -> bank 8r + 2q (+1)
  static constexpr int kStageRowOut = kSliceBytes + 16;      // lane (r, q) -> bank 4r + q
  static_assert(kWarpRows * kStageRowPartial <= kWarpBytes && kWarpRows * kStageRowOut <= kWarpBytes);
  static_assert(kPartialCols * 2 == Cfg::kColsPerConsumer && kSliceBytes == Cfg::kColsPerConsumer * 2);
};

// One round of a split piece's fp32 partials: columns [128 kRound, +128) of this consumer's half.
template <int kRound>
__device__ __forceinline__ void stage_partials(char* slice, int lane, const float (&inv)[2],
                                               const float (&o)[Cfg::kOAccum]) {
  constexpr int kNt = OutputStage::kPartialCols / 8;  // 8-column groups, 2 floats a lane each
#pragma unroll
  for (int half = 0; half < 2; ++half) {
    char* row = slice + (lane / 4 + 8 * half) * OutputStage::kStageRowPartial + 8 * (lane % 4);
#pragma unroll
    for (int j = 0; j < kNt; ++j) {
      const int nt = kRound * kNt + j;
      *reinterpret_cast<float2*>(row + 32 * j) =
          make_float2(o[nt * 4 + 2 * half] * inv[half], o[nt * 4 + 2 * half + 1] * inv[half]);
    }
  }
}

template <class Element>
__device__ __forceinline__ void stage_out(char* slice, int lane, const float (&inv)[2],
                                          const float (&o)[Cfg::kOAccum]) {
#pragma unroll
  for (int half = 0; half < 2; ++half) {
    char* row = slice + (lane / 4 + 8 * half) * OutputStage::kStageRowOut + 4 * (lane % 4);
#pragma unroll
    for (int nt = 0; nt < Cfg::kColsPerConsumer / 8; ++nt) {
      *reinterpret_cast<uint32_t*>(row + 16 * nt) =
          ptx::pack2<Element>(o[nt * 4 + 2 * half] * inv[half], o[nt * 4 + 2 * half + 1] * inv[half]);
    }
  }
}

// The warp's staged slice to global memory: lane l < 16 copies row l of it (`src`) to `dst`, its
// row's place (null for rows past M), once the warp's writes are visible to the async proxy.
template <bool kEvictLast>
__device__ __forceinline__ void copy_slice(void* dst, const char* src) {
  ptx::fence_proxy_async_shared();
  __syncwarp();
  if (dst != nullptr) {
    if constexpr (kEvictLast) {
      ptx::bulk_store(dst, src, OutputStage::kSliceBytes, ptx::evict_last_policy());
    } else {
      ptx::bulk_store(dst, src, OutputStage::kSliceBytes);
    }
  }
  ptx::bulk_commit();
}

// Both consumers' row sums added in a fixed order (the same in both, so both normalise
// identically): 1 / l of the thread's two rows into `inv`; consumer 0 writes lse.
__device__ __forceinline__ void finish_rows(const DecodeParams& p, const Segment& seg, int g,
                                            int m_block, const Coord& c, const Smem& sm,
                                            const RowState& st, float (&inv)[2]) {
  const bool split = seg.slot >= 0;
#pragma unroll
  for (int half = 0; half < 2; ++half) {
    float l = st.l[half];
    l += __shfl_xor_sync(0xffffffffu, l, 1);
    l += __shfl_xor_sync(0xffffffffu, l, 2);
    if (c.lane % 4 == 0) sm.row_sum[c.consumer * Cfg::kBlockM + c.r_local + 8 * half] = l;
  }
  // Also the point after which neither consumer reads the Q tile in this segment.
  ptx::named_barrier_sync_unaligned(static_cast<int>(NamedBarrier::kRowSums),
                          Cfg::kConsumers * Cfg::kWarpgroupThreads);
#pragma unroll
  for (int half = 0; half < 2; ++half) {
    const int r = c.r_local + 8 * half;
    const float l = sm.row_sum[r] + sm.row_sum[Cfg::kBlockM + r];
    const FinishedRow fin = finish_row(st.m[half], l, split);
    inv[half] = fin.inv_sum;
    const int row = m_block * Cfg::kBlockM + r;
    if (row >= p.rows_per_kv || c.consumer != 0 || c.lane % 4 != 0) continue;
    if (split) {
      p.lse_accum[workspace_row(p, seg.slot, g, row)] = fin.lse;
    } else {
      p.lse[lse_offset(p, seg.batch, g, row)] = fin.lse;
    }
  }
}

// A segment's end: lse, and this consumer's half of out (or of the fp32 partials of a split
// piece), staged over the Q tile and copied out by its warps.
template <class Element>
__device__ __forceinline__ void write_output(const DecodeParams& p, const Segment& seg, int g,
                                             int m_block, const Coord& c, const Smem& sm,
                                             const RowState& st, const float (&o)[Cfg::kOAccum]) {
  float inv[2];
  finish_rows(p, seg, g, m_block, c, sm, st, inv);
  const int lane = c.lane, warp = c.r_local / OutputStage::kWarpRows;
  char* slice = sm.q + (c.consumer * OutputStage::kWarps + warp) * OutputStage::kWarpBytes;
  const int row = m_block * Cfg::kBlockM + warp * OutputStage::kWarpRows + lane;  // lanes 0-15
  const bool copies = lane < OutputStage::kWarpRows && row < p.rows_per_kv;
  if (seg.slot >= 0) {
    float* dst = copies ? p.o_accum + workspace_row(p, seg.slot, g, row) * Cfg::kHeadDimV +
                              c.consumer * Cfg::kColsPerConsumer
                        : nullptr;
    const char* src = slice + lane * OutputStage::kStageRowPartial;
    stage_partials<0>(slice, lane, inv, o);
    copy_slice<true>(dst, src);
    ptx::bulk_wait_read();  // the slice is written again
    __syncwarp();
    stage_partials<1>(slice, lane, inv, o);
    copy_slice<true>(copies ? dst + OutputStage::kPartialCols : nullptr, src);
  } else {  // rows 16-byte aligned: out and its strides are (validate.cpp)
    Element* dst = copies ? static_cast<Element*>(p.out) + out_offset(p, seg.batch, g, row) +
                                c.consumer * Cfg::kColsPerConsumer
                          : nullptr;
    stage_out<Element>(slice, lane, inv, o);
    copy_slice<false>(dst, slice + lane * OutputStage::kStageRowOut);
  }
}

}  // namespace flash_mla::sm90
