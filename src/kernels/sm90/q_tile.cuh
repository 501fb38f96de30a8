// The query tile both Hopper kernels stage in shared memory: rows [row0, row0 + kRows) of the
// rows per KV head, as 9 sub-tiles of 64 channels (128-byte rows, 128B swizzle: the layout a
// TMA box has and a K-major wgmma descriptor reads). Rows past M are zeros.
#pragma once

#include <cstdint>

#include "kernels/params.h"
#include "kernels/sm90/config.h"

namespace flash_mla::sm90 {

// Thread t of `threads` cooperating threads; a row gather from arbitrary strides, so staged by
// threads rather than TMA. The caller publishes it to wgmma (fence.proxy.async + a barrier).
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
    uint4 v = make_uint4(0, 0, 0, 0);
    if (row < p.rows_per_kv) {
      const int i = row / p.heads_per_kv;
      const int h = g * p.heads_per_kv + row % p.heads_per_kv;
      v = __ldg(reinterpret_cast<const uint4*>(gQ + batch * p.q_batch_stride +
                                               i * p.q_seq_stride + h * p.q_head_stride) + cc);
    }
    const int sub = cc / 8, chunk = cc % 8;
    *reinterpret_cast<uint4*>(sQ + sub * kSubTileBytes + r * kRowBytes +
                              ((chunk ^ (r % 8)) * 16)) = v;
  }
}

}  // namespace flash_mla::sm90
