// The narrow Hopper kernel's segment end: the two consumers' states merged, each writing
// half of the output (narrow_kernel.cuh).
#pragma once

#include <cstdint>

#include "kernels/common/row_finish.h"
#include "kernels/common/softmax_ref.h"
#include "kernels/common/segments.h"
#include "kernels/params.h"
#include "kernels/sm90/config.h"
#include "kernels/sm90/narrow_math.cuh"
#include "kernels/sm90/narrow_smem.cuh"
#include "kernels/sm90/ptx_sm90.h"

namespace flash_mla::sm90 {

// Consumer kConsumer writes its half of the merged state (O^T tiles [kConsumer * kOTiles / 2,
// +kOTiles / 2), channels [256 kConsumer, +256)): out, or the fp32 partials of a split piece;
// consumer 0 also lse. Both consumers hold the same sums after the merge and reduce them in the
// same order, so both normalise identically.
template <class Element, int kRows, int kConsumer>
__device__ __forceinline__ void narrow_epilogue(const DecodeParams& p, const NarrowSmem<kRows>& s,
                                                const Segment& seg, int g, int t,
                                                NarrowState<kRows>& st) {
  using C = NarrowConfig<kRows>;
  constexpr int kCols = C::kColsPerThread;
  constexpr int kTile0 = kConsumer * C::kOTilesPerConsumer;
  const int lane = t % 32, warp = t / 32;
  const int m_row = 16 * warp + lane / 4;  // + 8*half: the thread's channels of a 64-tile
  float* col_sum = s.col_sum + kConsumer * C::kWarps * kRows;
  // Column sums over the 64 token rows: lanes, then warps in a fixed order.
#pragma unroll
  for (int j = 0; j < kCols; ++j) {
    float l = st.l[j];
    l += __shfl_xor_sync(0xffffffffu, l, 4);
    l += __shfl_xor_sync(0xffffffffu, l, 8);
    l += __shfl_xor_sync(0xffffffffu, l, 16);
    if (lane < 4) col_sum[warp * kRows + narrow_col(j, lane)] = l;
  }
  sync_consumer(kConsumer);
  const bool split = seg.slot >= 0;
#pragma unroll
  for (int j = 0; j < kCols; ++j) {
    const int row = narrow_col(j, lane);
    if (row >= p.rows_per_kv) continue;
    float sum = 0.f;
#pragma unroll
    for (int w = 0; w < C::kWarps; ++w) sum += col_sum[w * kRows + row];
    const FinishedRow fin = finish_row(st.m[j], sum, split);
    const float inv = fin.inv_sum, lse = fin.lse;
    const int idx0 = (j / 2) * 4 + (j % 2);  // + 2*half
    const bool writes_lse = kConsumer == 0 && warp == 0 && lane < 4;
    if (split) {
      const int64_t accum_row = workspace_row(p, seg.slot, g, row);
      float* dst = p.o_accum + accum_row * C::kHeadDimV + m_row;
      const uint64_t policy = ptx::evict_last_policy();
#pragma unroll
      for (int jt = kTile0; jt < kTile0 + C::kOTilesPerConsumer; ++jt) {
#pragma unroll
        for (int half = 0; half < 2; ++half) {
          ptx::store_with_policy(dst + jt * 64 + 8 * half, st.o[jt][idx0 + 2 * half] * inv,
                                 policy);
        }
      }
      if (writes_lse) p.lse_accum[accum_row] = lse;
    } else {
      Element* dst = static_cast<Element*>(p.out) + out_offset(p, seg.batch, g, row) + m_row;
#pragma unroll
      for (int jt = kTile0; jt < kTile0 + C::kOTilesPerConsumer; ++jt) {
#pragma unroll
        for (int half = 0; half < 2; ++half) {
          dst[jt * 64 + 8 * half] = to_element<Element>(st.o[jt][idx0 + 2 * half] * inv);
        }
      }
      if (writes_lse) p.lse[lse_offset(p, seg.batch, g, row)] = lse;
    }
  }
}

// At a segment's end the two consumers' states become one, each consumer keeping half of O^T:
// consumer c keeps tiles [c * kOTiles / 2, +kOTiles / 2) and hands the other half, with its
// partial sums, to the other consumer, through its half of the Q tile (free then). Both
// directions in each round, so each consumer moves half of what one consumer handing everything
// to the other would.
template <int kRows, int kConsumer>
__device__ __forceinline__ void narrow_merge(const NarrowSmem<kRows>& s, int t,
                                             NarrowHandoff& handoff, NarrowState<kRows>& st) {
  using C = NarrowConfig<kRows>;
  constexpr int kCols = C::kColsPerThread;
  constexpr int kOther = 1 - kConsumer;
  // Each direction's round buffer: [value][128 threads] floats.
  float* send = reinterpret_cast<float*>(s.q) + kConsumer * C::kMergeChunk * C::kWarpgroupThreads;
  const float* recv =
      reinterpret_cast<const float*>(s.q) + kOther * C::kMergeChunk * C::kWarpgroupThreads;
  // The maxima go through each consumer's P^T buffer: [column][128 threads] floats.
  float* my_max = reinterpret_cast<float*>(s.p + kConsumer * C::kPBytes);
  const float* other_max = reinterpret_cast<const float*>(s.p + kOther * C::kPBytes);
  static_assert(kCols * C::kWarpgroupThreads * sizeof(float) <= C::kPBytes);
  // Thread t of both consumers holds the same entries. First the maxima both ways: each
  // consumer rescales its own sums and O^T to the common maximum (fmaxf is symmetric, so both
  // get the same). Then per round both write, exchange, read and add, exchange (the buffers
  // are free again; after the last round, Q is).
  sync_consumer(kConsumer);  // every warp's last P·V done: the P^T buffer is free
#pragma unroll
  for (int j = 0; j < kCols; ++j) my_max[j * C::kWarpgroupThreads + t] = st.m[j];
  handoff.exchange(kConsumer);
  float scale[kCols];
#pragma unroll
  for (int j = 0; j < kCols; ++j) {
    const float m = fmaxf(st.m[j], other_max[j * C::kWarpgroupThreads + t]);
    scale[j] = ptx::exp2_approx(st.m[j] - softmax_ref(m));
    st.m[j] = m;
    st.l[j] *= scale[j];
  }
  st.scale_o(scale);
#pragma unroll
  for (int r = 0; r < C::kMergeRounds; ++r) {
    const int i0 = r * C::kMergeChunk;
#pragma unroll
    for (int i = 0; i < C::kMergeChunk; ++i) {
      if (i0 + i < C::kMergeFloats) {
        send[i * C::kWarpgroupThreads + t] = st.template merged<kOther>(i0 + i);
      }
    }
    handoff.exchange(kConsumer);  // round r written by both
#pragma unroll
    for (int i = 0; i < C::kMergeChunk; ++i) {
      if (i0 + i < C::kMergeFloats) {
        // Own value plus the other's: a + b == b + a, so both consumers' sums are identical.
        st.template merged<kConsumer>(i0 + i) += recv[i * C::kWarpgroupThreads + t];
      }
    }
    handoff.exchange(kConsumer);  // round r read by both
  }
}

}  // namespace flash_mla::sm90
