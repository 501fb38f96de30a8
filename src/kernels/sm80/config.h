// Tiling of the portable (sm_80+) split-KV decode kernel. Every size derives from the constants
// at the top; docs/design.md draws the layout.
//
// One CTA = kRowGroups row groups x 4 warps. A row group owns 16 query rows (the M of one
// mma.m16n8k16). Per KV tile of kBlockN = 32 tokens, warp w of a group computes the scores of
// tokens [8w, 8w + 8) for its 16 rows (one n8 tile, 36 k-steps over 576 channels), the group
// exchanges row maxima and the probabilities P through shared memory, then warp w accumulates
// the output columns [128w, 128w + 128) of its 16 rows: O[16 x 128] fp32 = 64 registers.
#pragma once

#include <cstddef>

namespace flash_mla::sm80 {

template <int kRowGroups_>
struct PortableConfig {
  static constexpr int kHeadDim = 576;
  static constexpr int kHeadDimV = 512;
  static constexpr int kPageBlock = 64;

  static constexpr int kRowGroups = kRowGroups_;
  static constexpr int kRowsPerGroup = 16;                 // mma M
  static constexpr int kBlockM = kRowsPerGroup * kRowGroups;
  static constexpr int kWarpsPerGroup = 4;
  static constexpr int kWarps = kWarpsPerGroup * kRowGroups;
  static constexpr int kThreads = 32 * kWarps;
  static constexpr int kThreadsPerGroup = 32 * kWarpsPerGroup;
  // The kernel is bound by the latency of its per-tile work more than by bytes in flight
  // (docs/perf-notes.md, v2): two CTAs per SM where the register file allows it (R <= 2 caps
  // registers at 128 for 256 threads).
  static constexpr int kMinCtasPerSm = 2;

  static constexpr int kBlockN = 32;                       // KV tokens per tile
  // KV tiles in shared memory: chosen at run time (as many as the device's shared memory
  // holds, see host/api.cpp), since with one CTA per SM the bytes in flight, (stages - 1)
  // tiles, are what feeds the memory system.
  static constexpr int kMinStages = 2;
  static constexpr int kMaxStages = 6;
  static constexpr int kTokensPerWarp = kBlockN / kWarpsPerGroup;  // S columns of one warp
  static constexpr int kColsPerWarp = kHeadDimV / kWarpsPerGroup;  // O columns of one warp
  static constexpr int kOTiles = kColsPerWarp / 8;                 // n8 tiles of O per warp

  static constexpr int kMmaK = 16;
  static constexpr int kQKSteps = kHeadDim / kMmaK;        // 36
  static constexpr int kQKChains = 4;                      // independent accumulators of S
  static constexpr int kPVSteps = kBlockN / kMmaK;         // 2

  // Rows of Q and K are padded by 16 bytes: a 1152-byte row is a multiple of 128 bytes, so
  // without padding the 8 row addresses of an ldmatrix would all hit the same banks.
  static constexpr int kElemBytes = 2;
  static constexpr int kChunkElems = 16 / kElemBytes;      // elements per 16-byte copy
  static constexpr int kRowStride = kHeadDim + kChunkElems;  // 584 elements
  static constexpr int kPStride = kBlockN + kChunkElems;     // 40 elements
  static constexpr int kChunksPerRow = kHeadDim / kChunkElems;  // 72

  // Shared memory (bytes).
  static constexpr size_t kQBytes = size_t(kBlockM) * kRowStride * kElemBytes;
  static constexpr size_t kKVStageBytes = size_t(kBlockN) * kRowStride * kElemBytes;
  static constexpr size_t kPBytes = size_t(kBlockM) * kPStride * kElemBytes;
  static constexpr size_t kRowStatBytes = size_t(kRowGroups) * kWarpsPerGroup * kRowsPerGroup * 4;
  static constexpr size_t smem_bytes(int stages) {
    return kQBytes + stages * kKVStageBytes + kPBytes + 2 * kRowStatBytes;
  }

  static_assert(kHeadDim % (2 * kMmaK) == 0, "QK loop consumes two k-steps per ldmatrix.x4");
  static_assert(kQKSteps % kQKChains == 0 && kQKChains % 2 == 0, "chains split the k-steps evenly");
  static_assert(kTokensPerWarp == 8, "each warp owns exactly one n8 tile of S");
  static_assert(kColsPerWarp % 16 == 0, "PV loads V as pairs of n8 tiles");
  static_assert(kPageBlock % kBlockN == 0, "a KV tile never straddles two pages");
  static_assert((kRowStride * kElemBytes) % 16 == 0 && (kRowStride * kElemBytes) % 128 == 16,
                "rows 16-byte aligned and offset by one 16-byte bank group");
  static_assert((kPStride * kElemBytes) % 16 == 0, "P rows 16-byte aligned for ldmatrix");
  static_assert(kQBytes % 16 == 0 && kKVStageBytes % 16 == 0 && kPBytes % 16 == 0,
                "every region starts 16-byte aligned");
  static_assert(kRowGroups == 1 || kRowGroups == 2, "16 or 32 rows per CTA (see host/api.cpp)");
};

// Named barrier ids: 0 is __syncthreads; each row group owns one.
enum class Barrier : int { kCta = 0, kRowGroupBase = 1 };

}  // namespace flash_mla::sm80
