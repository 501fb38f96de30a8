// The query tile both Hopper kernels stage in shared memory: rows [row0, row0 + kRows) of the
// rows per KV head, as 9 sub-tiles of 64 channels (128-byte rows, 128B swizzle: the layout a
// TMA box has and a K-major wgmma descriptor reads). Rows past M are zeros.
#pragma once

#include <cstdint>

#include "kernels/common/ptx.h"
#include "kernels/common/segments.h"
#include "kernels/params.h"
#include "kernels/sm90/config.h"

namespace flash_mla::sm90 {

// Thread t of `threads` cooperating threads; a row gather from arbitrary strides, so staged by
// threads rather than TMA. Every chunk is a cp.async, all in flight at once: one round trip to
// memory per segment (a load-then-store loop waited for each of its loads in turn;
// docs/perf-notes.md, "Q in one round trip"). Returns once this thread's chunks have landed;
// the caller publishes the tile to wgmma (fence.proxy.async + a barrier).
template <class Element, int kRows>
__device__ __forceinline__ void load_q_rows(const DecodeParams& p, char* sQ, int batch, int g,
                                            int row0, int t, int threads) {
  constexpr int kRowBytes = HopperConfig::kRowBytes;
  constexpr int kSubTileBytes = kRows * kRowBytes;
  constexpr int kChunksPerRow = HopperConfig::kHeadDim * HopperConfig::kElemBytes / 16;  // 72
  const Element* gQ = static_cast<const Element*>(p.q);
  for (int c = t; c < kRows * kChunksPerRow; c += threads) {
    const int r = c / kChunksPerRow;
    const int cc = c % kChunksPerRow;
    const int row = row0 + r;
    const bool valid = row < p.rows_per_kv;  // rows past M: zero-filled, nothing read
    const Element* src = gQ;
    if (valid) src = gQ + q_offset(p, batch, g, row) + cc * (16 / sizeof(Element));
    const int sub = cc / 8, chunk = cc % 8;
    ptx::cp_async_16(sQ + sub * kSubTileBytes + r * kRowBytes + ((chunk ^ (r % 8)) * 16), src,
                     valid);
  }
  ptx::cp_async_commit();
  ptx::cp_async_wait<0>();
}

}  // namespace flash_mla::sm90
