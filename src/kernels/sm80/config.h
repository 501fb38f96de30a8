// Tiling of the portable (sm_80+) split-KV decode kernel. Every size derives from the constants
// at the top; docs/design.md draws the layout.
//
// One CTA = kRowGroups row groups x 4 warps; a row group owns 16 query rows (the M of one
// mma.m16n8k16). Per KV tile of kBlockN = 32 tokens:
//   S    16-row CTAs, k-split: warp w computes the partial scores of all 32 tokens over the
//        channels [144w, 144w + 144) with its slice of Q held in registers, so each K
//        fragment feeds four n8 tiles; partials meet in shared memory and warp w sums the four
//        for its own 8 tokens [8w, 8w + 8).
//        32-row CTAs, token split: warp w computes its 8 tokens over all 576 channels, Q read
//        from shared memory;
//   softmax  row maxima of the 4 warps exchanged through shared memory, probabilities P
//        written to shared memory;
//   P·V  warp w accumulates output columns [128w, 128w + 128): O[16 x 128] fp32, 64 registers.
#pragma once

#include <cstddef>

#include "scheduler/schedule.h"

namespace flash_mla::sm80 {

template <int kRowGroups_>
struct PortableConfig {
  static constexpr int kHeadDim = 576;
  static constexpr int kHeadDimV = 512;
  static constexpr int kPageBlock = sched::kPageBlock;  // the scheduler's page, 64 tokens

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
  // KV tiles in shared memory, a run-time value (params.kv_stages): kDefaultStages unless the
  // tuning override FLASH_MLA_PORTABLE_MAX_STAGES asks for more, and never more than the
  // device's shared memory holds (host/api.cpp). More stages at one CTA per SM measured slower
  // than two stages at two CTAs per SM (docs/perf-notes.md, v2, v5).
  static constexpr int kMinStages = 2;
  static constexpr int kDefaultStages = 2;
  static constexpr int kMaxStages = 6;  // cp_async_wait_dynamic allows stages - 2 <= 4 pending
  static constexpr int kTokensPerWarp = kBlockN / kWarpsPerGroup;  // S columns of one warp
  static constexpr int kColsPerWarp = kHeadDimV / kWarpsPerGroup;  // O columns of one warp
  static constexpr int kOTiles = kColsPerWarp / 8;                 // n8 tiles of O per warp

  static constexpr int kMmaK = 16;
  static constexpr int kQKSteps = kHeadDim / kMmaK;        // 36
  static constexpr int kKStepsPerWarp = kQKSteps / kWarpsPerGroup;  // 9: the k-split of S
  static constexpr int kSTiles = kBlockN / 8;                        // n8 tiles of partial S
  static constexpr int kPVSteps = kBlockN / kMmaK;         // 2

  // Rows of Q and K are padded by 16 bytes: a 1152-byte row is a multiple of 128 bytes, so
  // without padding the 8 row addresses of an ldmatrix would all hit the same banks.
  static constexpr int kElemBytes = 2;
  static constexpr int kChunkElems = 16 / kElemBytes;      // elements per 16-byte copy
  static constexpr int kRowStride = kHeadDim + kChunkElems;  // 584 elements
  static constexpr int kPStride = kBlockN + kChunkElems;     // 40 elements
  // Partial scores, fp32, [group][warp][16 rows][kSStride]: 160-byte rows make the float2
  // accesses of a half-warp (8 rows x 4 column pairs) hit 32 distinct banks.
  static constexpr int kSStride = kBlockN + 8;               // 40 floats
  static constexpr int kChunksPerRow = kHeadDim / kChunkElems;  // 72

  // Shared memory (bytes).
  static constexpr size_t kQBytes = size_t(kBlockM) * kRowStride * kElemBytes;
  static constexpr size_t kKVStageBytes = size_t(kBlockN) * kRowStride * kElemBytes;
  static constexpr size_t kPBytes = size_t(kBlockM) * kPStride * kElemBytes;
  static constexpr size_t kRowStatBytes = size_t(kRowGroups) * kWarpsPerGroup * kRowsPerGroup * 4;
  static constexpr size_t kSBytes =
      size_t(kRowGroups) * kWarpsPerGroup * kRowsPerGroup * kSStride * sizeof(float);
  // Scores by k-split (16-row CTAs) or by token split (32-row CTAs); both measured in
  // docs/perf-notes.md (v2, v4, v5). With the k-split, Q lives in registers (36 per thread for
  // its k-slice) after the segment's first tile and its buffer then holds the partial scores,
  // which keeps the configuration within the 99 KB of sm_86/sm_89. 32-row CTAs run two per SM
  // at 128 registers, where neither Q in registers nor the partial-score traffic pays.
  static constexpr bool kKSplitScores = kRowGroups == 1;
  static constexpr int kQKChains = 4;  // token split: independent accumulators over 36 k-steps
  static constexpr size_t kQAndSBytes = !kKSplitScores ? kQBytes
                                        : (kQBytes > kSBytes ? kQBytes : kSBytes);
  static constexpr size_t smem_bytes(int stages) {
    return kQAndSBytes + kPBytes + 2 * kRowStatBytes + stages * kKVStageBytes;
  }

  static_assert(kHeadDim % (2 * kMmaK) == 0, "QK loop consumes two k-steps per ldmatrix.x4");
  static_assert(kQKSteps % kWarpsPerGroup == 0, "the k-split gives each warp whole k-steps");
  static_assert(kSTiles % 2 == 0, "K fragments load two n8 tiles at a time");
  static_assert(kTokensPerWarp == 8, "each warp owns exactly one n8 tile of S");
  static_assert(kColsPerWarp % 16 == 0, "PV loads V as pairs of n8 tiles");
  static_assert(kPageBlock % kBlockN == 0, "a KV tile never straddles two pages");
  static_assert((kRowStride * kElemBytes) % 16 == 0 && (kRowStride * kElemBytes) % 128 == 16,
                "rows 16-byte aligned and offset by one 16-byte bank group");
  static_assert((kPStride * kElemBytes) % 16 == 0, "P rows 16-byte aligned for ldmatrix");
  static_assert((kSStride * 4) % 128 == 32, "partial-score rows offset by 8 banks");
  static_assert(kQAndSBytes % 16 == 0 && kKVStageBytes % 16 == 0 && kPBytes % 16 == 0,
                "every region starts 16-byte aligned");
  static_assert(kRowGroups == 1 || kRowGroups == 2, "16 or 32 rows per CTA (see host/api.cpp)");
  static_assert(kMinStages <= kDefaultStages && kDefaultStages <= kMaxStages &&
                    kMaxStages - 2 <= 4,
                "stage counts within what the pipeline's wait dispatch handles");
};

// Named barrier ids: 0 is __syncthreads; each row group owns one (partial scores published,
// row maxima exchanged, P written, row sums exchanged).
enum class Barrier : int { kCta = 0, kRowGroupBase = 1 };

}  // namespace flash_mla::sm80
