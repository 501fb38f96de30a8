// The wide Hopper kernel's epilogue: both consumers' row sums added, then out/lse or the
// fp32 partials of a split piece written (decode_kernel.cuh).
#pragma once

#include <cstdint>

#include "kernels/common/row_finish.h"
#include "kernels/common/segments.h"
#include "kernels/params.h"
#include "kernels/sm90/decode_math.cuh"
#include "kernels/sm90/decode_smem.cuh"
#include "kernels/sm90/ptx_sm90.h"

namespace flash_mla::sm90 {

template <class Element>
__device__ __forceinline__ void write_output(const DecodeParams& p, const Segment& seg, int g,
                                             int m_block, const Coord& c, const Smem& sm,
                                             const RowState& st, const float (&o)[Cfg::kOAccum]) {
  const bool split = seg.slot >= 0;
  const int consumer = c.consumer, lane = c.lane;
  // Each consumer summed the pages it owns: publish the halves, add them in a fixed order
  // (the same in both consumers, so both normalise identically).
#pragma unroll
  for (int half = 0; half < 2; ++half) {
    float l = st.l[half];
    l += __shfl_xor_sync(0xffffffffu, l, 1);
    l += __shfl_xor_sync(0xffffffffu, l, 2);
    if (lane % 4 == 0) sm.row_sum[consumer * Cfg::kBlockM + c.r_local + 8 * half] = l;
  }
  ptx::named_barrier_sync_unaligned(static_cast<int>(NamedBarrier::kRowSums),
                          Cfg::kConsumers * Cfg::kWarpgroupThreads);
#pragma unroll
  for (int half = 0; half < 2; ++half) {
    const int r = c.r_local + 8 * half;
    const float l = sm.row_sum[r] + sm.row_sum[Cfg::kBlockM + r];
    const int row = m_block * Cfg::kBlockM + r;
    if (row >= p.rows_per_kv) continue;
    const FinishedRow fin = finish_row(st.m[half], l, split);
    const float inv = fin.inv_sum, lse = fin.lse;
    const int col0 = consumer * Cfg::kColsPerConsumer + 2 * (lane % 4);
    const int i = row / p.heads_per_kv;
    const int h = g * p.heads_per_kv + row % p.heads_per_kv;
    if (split) {
      const int64_t accum_row = workspace_row(p, seg.slot, g, row);
      float* dst = p.o_accum + accum_row * Cfg::kHeadDimV + col0;
      const uint64_t policy = ptx::evict_last_policy();
#pragma unroll
      for (int nt = 0; nt < Cfg::kColsPerConsumer / 8; ++nt) {
        ptx::store_with_policy(dst + nt * 8, o[nt * 4 + 2 * half] * inv,
                                o[nt * 4 + 2 * half + 1] * inv, policy);
      }
      if (consumer == 0 && lane % 4 == 0) p.lse_accum[accum_row] = lse;
    } else {
      Element* dst = static_cast<Element*>(p.out) + seg.batch * p.out_batch_stride +
                     i * p.out_seq_stride + h * p.out_head_stride + col0;
#pragma unroll
      for (int nt = 0; nt < Cfg::kColsPerConsumer / 8; ++nt) {
        *reinterpret_cast<uint32_t*>(dst + nt * 8) =
            ptx::pack2<Element>(o[nt * 4 + 2 * half] * inv, o[nt * 4 + 2 * half + 1] * inv);
      }
      if (consumer == 0 && lane % 4 == 0) {
        p.lse[seg.batch * p.lse_batch_stride + h * p.lse_head_stride + i * p.lse_seq_stride] = lse;
      }
    }
  }
}

}  // namespace flash_mla::sm90
