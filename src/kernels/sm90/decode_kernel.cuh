// Hopper warp-specialised split-KV decode kernel (v6): TMA loads into 128B-swizzled shared
// memory, wgmma for Q·Kᵀ and P·V, mbarrier pipelines, setmaxnreg.
//
// Grid (m_blocks, num_sm_parts, h_kv), one CTA per SM, three warpgroups:
//   producer   warp 0 walks the CTA's (sequence, page) list and TMA-loads each 64-token page
//              (9 boxes of 64 channels) into one of two stages; a sequence's partial last page
//              ends at its last token, the rows before it zero-filled (page_origin);
//   consumers  take the pages of a segment in pairs (A, B). Consumer 0 owns page A: it computes
//              S_A = Q·K_Aᵀ over the whole page, its softmax against the row's reference m,
//              and publishes the new reference and P_A (written over the page's RoPE channels,
//              which nothing reads after Q·Kᵀ). Consumer 1 does the same for page B, starting
//              from consumer 0's reference. Each consumer keeps one half of the output,
//              O[:, 256c, +256), and adds both pages to it: its own page's P from registers,
//              the other's from shared memory. One consumer's softmax runs while the other's
//              GEMMs occupy the tensor cores (docs/design.md, "Hopper kernel").
// Segments, workspace slots and the epilogue follow the portable kernel (same combine kernel).
#pragma once

#include <cuda.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cmath>
#include <cstdint>

#include "kernels/common/segments.h"
#include "kernels/params.h"
#include "kernels/sm90/config.h"
#include "kernels/sm90/decode_epilogue.cuh"
#include "kernels/sm90/decode_math.cuh"
#include "kernels/sm90/decode_producer.cuh"
#include "kernels/sm90/decode_smem.cuh"
#include "kernels/sm90/ptx_sm90.h"
#include "kernels/sm90/q_tile.cuh"

namespace flash_mla::sm90 {

// ---------------------------------------------------------------------------------------------
// Consumers (the producer: decode_producer.cuh)
// ---------------------------------------------------------------------------------------------
// The consumers' view of the KV stages: page `it` of the CTA's walk sits in stage it % 2.
// Both consumers wait on every page they read (the owner for Q·Kᵀ, the other for P·V), so
// each sees the TMA bytes through its own barriers: one phase of each box barrier per use of
// the stage.
struct StageWalk {
  uint32_t page_a_parity = 0;  // parity of the next page_a / page_b hand-off (consumer 1 / 0)
  uint32_t page_b_parity = 0;

  __device__ static uint32_t parity(int it) { return (it / Cfg::kStages) & 1; }

  // S of page `it` (the owner): box by box.
  template <class Element, int kBoxBegin = 0, int kBoxEnd = Cfg::kSubTiles>
  __device__ void issue_scores_for(const Smem& s, int it, float (&sc)[Cfg::kSAccum]) {
    const int stage = it % Cfg::kStages;
    issue_scores<Element, kBoxBegin, kBoxEnd>(s.q, s.stage(stage), s.box_full(stage, 0),
                                              parity(it), sc);
  }
  // Before the other consumer's P·V on page `it`: the 4 value boxes of its half of O, and no
  // others: the owner may already have released the other half, whose barriers then move on to
  // the next page.
  __device__ void wait_values(const Smem& s, int it, int consumer) {
    const int stage = it % Cfg::kStages;
#pragma unroll
    for (int c = 0; c < Cfg::kSubTilesPerConsumerV; ++c) {
      ptx::mbarrier_wait(s.box_full(stage, consumer * Cfg::kSubTilesPerConsumerV + c), parity(it));
    }
  }
  // The other consumer's hand-off of this pair (consumer 1 waits on page_a, 0 on page_b).
  __device__ void wait_page_a(const Smem& s) {
    ptx::mbarrier_wait(s.page_a, page_a_parity);
    page_a_parity ^= 1u;
  }
  __device__ void wait_page_b(const Smem& s) {
    ptx::mbarrier_wait(s.page_b, page_b_parity);
    page_b_parity ^= 1u;
  }
  // Every thread of `consumer` arrives: its P writes into the stage are released by itself.
  __device__ static void release(const Smem& s, int it, int consumer) {
    ptx::mbarrier_arrive(s.stage_empty(it % Cfg::kStages, consumer));
  }
};

// One pair of pages (A at `tile`, B at tile + 64 if has_b) for consumer 0, which owns page A
// and the left half of O. S_A is already issued into `sc` (by the previous pair, or before the
// segment's first). With kNext (page B and a next pair exist in the segment) the next pair's
// S_A is issued here too, where kOrder says (NextScores). kNext is a template argument so that
// no wgmma issue sits on a data-dependent branch: ptxas then need not serialise the chains
// (C7518).
template <class Element, NextScores kOrder, bool kNext>
__device__ __forceinline__ void pair_consumer0(const DecodeParams& p, const Smem& s,
                                               const Segment& seg, int unmasked, int tile,
                                               bool has_b, int it, int m_block, const Coord& c,
                                               StageWalk& walk, RowState& st,
                                               float (&o)[Cfg::kOAccum],
                                               float (&sc)[Cfg::kSAccum]) {
  constexpr int kHalf = Cfg::kSubTilesPerConsumerV;
  const int stage_a = it % Cfg::kStages, stage_b = (it + 1) % Cfg::kStages;
  ptx::wgmma_wait<0>();
  uint32_t pr[Cfg::kPRegs];
  float rescale[2];
  page_softmax<Element>(p, seg, tile, unmasked, m_block, c, sc, st, pr, s.p_tile(stage_a),
                        s.row_ref, rescale);
  ptx::fence_proxy_async_shared();  // P_A written by threads, read by consumer 1's wgmma
  ptx::mbarrier_arrive(s.page_a);
  rescale_output(o, rescale);
  issue_pv_registers<Element>(pr, s.stage(stage_a), o);
  ptx::wgmma_wait<0>();
  StageWalk::release(s, it, 0);  // boxes 0-3 of stage A load while page B is computed
  // The boxes of the next S_A issued before page B's P·V (kSplit) or after it (kAfterPageB).
  constexpr int kEarly = kNext && kOrder == NextScores::kSplit ? kHalf : 0;
  if (kNext || has_b) {
    if constexpr (kEarly > 0) walk.issue_scores_for<Element, 0, kEarly>(s, it + 2, sc);
    walk.wait_values(s, it + 1, 0);
    walk.wait_page_b(s);
    adopt_reference(c, s.row_ref + Cfg::kBlockM, st, rescale);
    rescale_output(o, rescale);
    issue_pv_shared<Element>(s.p_tile(stage_b), s.stage(stage_b), o);
    ptx::wgmma_wait<0>();
    StageWalk::release(s, it + 1, 0);
    if constexpr (kNext) {
      walk.issue_scores_for<Element, kEarly, Cfg::kSubTiles>(s, it + 2, sc);
    }
  }
}

// The same pair for consumer 1, which owns page B (if kHasB) and the right half of O. P·V A,R
// is queued behind S_B without waiting for it, so it starts as soon as the tensor cores finish
// S_B and page A's hand-off has come; S_B is then waited for (the older group) while P·V A,R runs.
template <class Element, bool kHasB>
__device__ __forceinline__ void pair_consumer1(const DecodeParams& p, const Smem& s,
                                               const Segment& seg, int unmasked, int tile,
                                               int it, int m_block, const Coord& c,
                                               StageWalk& walk, RowState& st,
                                               float (&o)[Cfg::kOAccum]) {
  constexpr int kRight = Cfg::kSubTilesPerConsumerV * Cfg::kSubTileBytes;  // V columns 256..511
  const int stage_a = it % Cfg::kStages, stage_b = (it + 1) % Cfg::kStages;
  float sc[Cfg::kSAccum];
  if constexpr (kHasB) walk.issue_scores_for<Element>(s, it + 1, sc);
  walk.wait_values(s, it, 1);
  walk.wait_page_a(s);
  float rescale[2];
  adopt_reference(c, s.row_ref, st, rescale);
  rescale_output(o, rescale);
  issue_pv_shared<Element>(s.p_tile(stage_a), s.stage(stage_a) + kRight, o);
  uint32_t pr[Cfg::kPRegs];
  if constexpr (kHasB) {
    ptx::wgmma_wait<1>();  // S_B
    page_softmax<Element>(p, seg, tile + Cfg::kBlockN, unmasked, m_block, c, sc, st, pr,
                          s.p_tile(stage_b), s.row_ref + Cfg::kBlockM, rescale);
    ptx::fence_proxy_async_shared();  // P_B written by threads, read by consumer 0's wgmma
    ptx::mbarrier_arrive(s.page_b);
  }
  ptx::wgmma_wait<0>();
  StageWalk::release(s, it, 1);
  if constexpr (kHasB) {
    rescale_output(o, rescale);
    issue_pv_registers<Element>(pr, s.stage(stage_b) + kRight, o);
    ptx::wgmma_wait<0>();
    StageWalk::release(s, it + 1, 1);
  }
}

template <class Element, NextScores kOrder>
__device__ __forceinline__ void consume(const DecodeParams& p, const Smem& s, int part, int m_block,
                                        int g, int consumer, int t) {
  const Coord c = {t % 32, (t / 32) * 16 + (t % 32) / 4, consumer};
  const int ctid = consumer * Cfg::kWarpgroupThreads + t;
  constexpr int kConsumerThreads = Cfg::kConsumers * Cfg::kWarpgroupThreads;
  int it = 0;
  StageWalk walk;
  for_each_segment(p, part, [&](const Segment& seg) {
    // Both consumers are past the previous segment's last wgmma on Q, and the bulk copies of
    // its output have read the rows staged over the Q tile (decode_epilogue.cuh).
    ptx::bulk_wait_read();
    ptx::named_barrier_sync_unaligned(static_cast<int>(NamedBarrier::kConsumers), kConsumerThreads);
    load_q_rows<Element, Cfg::kBlockM>(p, s.q, seg.batch, g, m_block * Cfg::kBlockM, ctid,
                                       kConsumerThreads);
    ptx::fence_proxy_async_shared();
    ptx::named_barrier_sync_unaligned(static_cast<int>(NamedBarrier::kConsumers), kConsumerThreads);

    RowState st = {{-INFINITY, -INFINITY}, {0.f, 0.f}};
    const int unmasked = unmasked_end(p, seg, m_block);
    float o[Cfg::kOAccum];
#pragma unroll
    for (int k = 0; k < Cfg::kOAccum; ++k) o[k] = 0.f;
    if (consumer == 0) {
      float sc[Cfg::kSAccum];  // S_A of the pair, issued one pair ahead
      walk.issue_scores_for<Element>(s, it, sc);
      int tile = seg.token_begin;
      for (; tile + 2 * Cfg::kBlockN < seg.token_end; tile += 2 * Cfg::kBlockN, it += 2) {
        pair_consumer0<Element, kOrder, true>(p, s, seg, unmasked, tile, true, it, m_block, c,
                                              walk, st, o, sc);
      }
      const bool has_b = tile + Cfg::kBlockN < seg.token_end;
      pair_consumer0<Element, kOrder, false>(p, s, seg, unmasked, tile, has_b, it, m_block, c,
                                             walk, st, o, sc);
      it += has_b ? 2 : 1;
    } else {
      for (int tile = seg.token_begin; tile < seg.token_end; tile += 2 * Cfg::kBlockN) {
        if (tile + Cfg::kBlockN < seg.token_end) {
          pair_consumer1<Element, true>(p, s, seg, unmasked, tile, it, m_block, c, walk, st, o);
          it += 2;
        } else {
          pair_consumer1<Element, false>(p, s, seg, unmasked, tile, it, m_block, c, walk, st, o);
          it += 1;
        }
      }
    }
    write_output<Element>(p, seg, g, m_block, c, s, st, o);
  });
  ptx::bulk_wait();  // the staged rows stay in shared memory until the copies are done
}

template <class Element, NextScores kOrder>
__global__ void __launch_bounds__(Cfg::kThreads, 1)
    hopper_decode_kernel(const __grid_constant__ DecodeParams p,
                         const __grid_constant__ CUtensorMap tmap_kv) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)  // wgmma, setmaxnreg and TMA exist on sm_90a only
  extern __shared__ char smem_raw[];
  const Smem s(smem_raw);
  const int m_block = blockIdx.x;  // fastest: the CTAs reading the same pages run side by side
  const int part = blockIdx.y;
  const int g = blockIdx.z;
  const Role role = static_cast<Role>(threadIdx.x / Cfg::kWarpgroupThreads);

  if (threadIdx.x == 0) {
    for (int st = 0; st < Cfg::kStages; ++st) {
      for (int c = 0; c < Cfg::kSubTiles; ++c) ptx::mbarrier_init(s.box_full(st, c), 1);
      for (int c = 0; c < Cfg::kConsumers; ++c) {
        ptx::mbarrier_init(s.stage_empty(st, c), Cfg::kWarpgroupThreads);
      }
    }
    ptx::mbarrier_init(s.page_a, Cfg::kWarpgroupThreads);
    ptx::mbarrier_init(s.page_b, Cfg::kWarpgroupThreads);
    ptx::fence_mbarrier_init();
    ptx::prefetch_tensor_map(&tmap_kv);
  }
  __syncthreads();
  // A programmatic dependent launch: no global read before this (docs/design.md, "A decode call").
  ptx::griddep_wait();
  allow_combine_if_nothing_split(p, part);

  if (role == Role::kProducer) {
    ptx::setmaxnreg_dec<Cfg::kProducerRegs>();
    // Warp 0 loads (lane 0 issues); warps 1-3 have no work.
    if (threadIdx.x < Cfg::kProducerLanes) produce(p, &tmap_kv, s, part, g, threadIdx.x);
  } else {
    // One copy of the consumer code per warpgroup, each compiled to its own register budget.
    if (role == Role::kConsumer0) {
      ptx::setmaxnreg_inc<Cfg::kConsumer0Regs>();
      consume<Element, kOrder>(p, s, part, m_block, g, 0, threadIdx.x % Cfg::kWarpgroupThreads);
    } else {
      ptx::setmaxnreg_inc<Cfg::kConsumer1Regs>();
      consume<Element, kOrder>(p, s, part, m_block, g, 1, threadIdx.x % Cfg::kWarpgroupThreads);
    }
  }
#endif
}

}  // namespace flash_mla::sm90
