// The narrow Hopper kernel's producer thread: TMA loads of each page's nine boxes into the
// ring of slots (narrow_kernel.cuh). A sequence's partial last page is loaded ending at its
// last token, the rows before it zero-filled by the copy engine (page_origin, segments.h).
#pragma once

#include <cuda.h>

#include <cstdint>

#include "kernels/common/segments.h"
#include "kernels/params.h"
#include "kernels/sm90/config.h"
#include "kernels/sm90/narrow_smem.cuh"
#include "kernels/sm90/ptx_sm90.h"

namespace flash_mla::sm90 {

template <int kRows>
__device__ __forceinline__ void narrow_produce(const DecodeParams& p, const CUtensorMap* tmap,
                                               const NarrowSmem<kRows>& s, int part, int g) {
  using C = NarrowConfig<kRows>;
  const uint64_t policy = ptx::evict_first_policy();
  uint32_t box = 0;
  for_each_segment(p, part, [&](const Segment& seg) {
    for (int tile = seg.token_begin; tile < seg.token_end; tile += C::kBlockN) {
      const int page = p.block_table[seg.batch * p.block_table_batch_stride +
                                     tile / C::kPageBlock];
      const int token = page_origin(seg, tile) - tile;  // 0, or < 0 on a partial last page
      for (int c = 0; c < C::kSubTiles; ++c, ++box) {
        const RingPos<C::kSlots> pos(box);
        if (box >= uint32_t(C::kSlots)) ptx::mbarrier_wait(&s.empty[pos.slot], pos.phase ^ 1u);
        ptx::mbarrier_arrive_expect_tx(&s.full[pos.slot], C::kBoxBytes);
        ptx::tma_load_4d(s.slot(pos.slot), tmap, &s.full[pos.slot], c * C::kSubTileCols,
                         token, g, page, policy);
      }
    }
  });
}

}  // namespace flash_mla::sm90
