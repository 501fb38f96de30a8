// The wide Hopper kernel's producer warpgroup (decode_kernel.cuh): warp 0 TMA-loads each page's
// boxes into the two stages; warp 1 zeroes each sequence's partial last page once it has
// landed, so that the loads never wait for a page to land.
#pragma once

#include <cuda.h>

#include <cstdint>

#include "kernels/common/segments.h"
#include "kernels/params.h"
#include "kernels/sm90/decode_smem.cuh"
#include "kernels/sm90/ptx_sm90.h"

namespace flash_mla::sm90 {

__device__ __forceinline__ void zero_page_tail(char* stage, int valid, int lane) {
  // In each box, rows [valid, kBlockN) are one contiguous range of whole 128-byte rows (the
  // swizzle permutes chunks within a row only): 16 bytes a lane, 512 bytes a warp store.
  constexpr uint32_t kStep = 16 * Cfg::kProducerLanes;
  const uint32_t base = ptx::smem_addr(stage), first = valid * Cfg::kRowBytes + lane * 16;
#pragma unroll 1
  for (uint32_t box = base; box < base + Cfg::kTileBytes; box += Cfg::kSubTileBytes) {
    for (uint32_t a = box + first; a < box + Cfg::kSubTileBytes; a += kStep) {
      ptx::st_shared_zero16(a);
    }
  }
}

__device__ __forceinline__ void produce(const DecodeParams& p, const CUtensorMap* tmap,
                                        const Smem& s, int part, int g, int lane) {
  const uint64_t policy = ptx::evict_first_policy();
  int it = 0;
  for_each_segment(p, part, [&](const Segment& seg) {
    for (int tile = seg.token_begin; tile < seg.token_end; tile += Cfg::kBlockN, ++it) {
      const int stage = it % Cfg::kStages;
      const uint32_t use = it / Cfg::kStages;
      const int page = p.block_table[seg.batch * p.block_table_batch_stride +
                                     tile / Cfg::kPageBlock];
      // Boxes 0-3 (V columns 0..255) are read last by consumer 0, whatever page of the pair the
      // stage held; boxes 4-7 by consumer 1; box 8 (RoPE, then P) by either, so it waits for
      // both. Page A's boxes 0-3 are free one P·V before the rest of the stage.
      for (int c = 0; c < Cfg::kSubTiles; ++c) {
        if (use > 0 && (c == 0 || c == Cfg::kSubTilesPerConsumerV)) {
          ptx::mbarrier_wait(s.stage_empty(stage, c == 0 ? 0 : 1), (use - 1) & 1);
        }
        if (lane == 0) {
          uint64_t* bar = s.box_full(stage, c);
          ptx::mbarrier_arrive_expect_tx(bar, Cfg::kSubTileBytes);
          ptx::tma_load_4d(s.stage(stage) + c * Cfg::kSubTileBytes, tmap, bar,
                           c * Cfg::kSubTileCols, tile % Cfg::kPageBlock, g, page, policy);
        }
      }
      if (lane == 0 && partial_page(seg, tile)) ptx::mbarrier_arrive(&s.issued[stage]);
    }
  });
}

// Warp 1: walks the same pages as warp 0. For a partial last page it waits until warp 0 has
// issued its boxes (`issued`: from then on the box barriers' current phase is this page's, and
// none completes another before `ready`, which both consumers wait for before they read the
// page), waits for the boxes, zeroes the tokens past the end and arrives on `ready` with every
// lane (each releases its own zeros). Warp 0 issues the next pages meanwhile, where it used to
// wait for the page to land (docs/perf-notes.md, "exp107").
__device__ __forceinline__ void zero_partial_pages(const DecodeParams& p, const Smem& s, int part,
                                                   int lane) {
  int it = 0;             // pages walked so far
  uint32_t issued = 0;    // bit s: parity of the next `issued` phase of stage s
  for_each_segment(p, part, [&](const Segment& seg) {
    const int last = (seg.token_end - seg.token_begin - 1) / Cfg::kBlockN;  // its last page
    it += last + 1;
    const int tile = seg.token_begin + last * Cfg::kBlockN;
    if (!partial_page(seg, tile)) return;
    const int stage = (it - 1) % Cfg::kStages;
    const uint32_t use = (it - 1) / Cfg::kStages;
    ptx::mbarrier_wait(&s.issued[stage], (issued >> stage) & 1u);
    issued ^= 1u << stage;
    for (int c = 0; c < Cfg::kSubTiles; ++c) ptx::mbarrier_wait(s.box_full(stage, c), use & 1);
    zero_page_tail(s.stage(stage), seg.token_end - tile, lane);
    ptx::fence_proxy_async_shared();
    ptx::mbarrier_arrive(&s.ready[stage]);
  });
}

}  // namespace flash_mla::sm90
