// The wide Hopper kernel's producer (decode_kernel.cuh): one warp TMA-loads each page's boxes
// into the two stages. A sequence's partial last page is loaded ending at its last token, the
// rows before it zero-filled by the copy engine (page_origin, segments.h).
#pragma once

#include <cuda.h>

#include <cstdint>

#include "kernels/common/segments.h"
#include "kernels/params.h"
#include "kernels/sm90/decode_smem.cuh"
#include "kernels/sm90/ptx_sm90.h"

namespace flash_mla::sm90 {

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
      const int token = page_origin(seg, tile) - tile;  // 0, or < 0 on a partial last page
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
                           c * Cfg::kSubTileCols, token, g, page, policy);
        }
      }
    }
  });
}

}  // namespace flash_mla::sm90
