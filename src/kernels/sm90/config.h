// Tiling of the Hopper warp-specialised decode kernel (v6, "pair" schedule). Every size derives from these
// constants; docs/design.md has the schedule, the budgets and the barrier table.
#pragma once

#include <cstddef>
#include <cstdint>

#include "scheduler/schedule.h"

namespace flash_mla::sm90 {

struct HopperConfig {
  static constexpr int kHeadDim = 576;     // K: 512 latent + 64 RoPE channels
  static constexpr int kHeadDimV = 512;    // V: the first 512 channels of K
  static constexpr int kBlockM = 64;       // query rows per CTA: the wgmma M
  static constexpr int kBlockN = 64;       // KV tokens per tile: one page (32 was slower: v2)
  static constexpr int kPageBlock = sched::kPageBlock;  // the scheduler's page, 64 tokens
  static constexpr int kElemBytes = 2;     // bf16 / fp16

  // Shared-memory tiles are stored as 64-channel sub-tiles of 128-byte rows, the 128B swizzle
  // atom that one TMA box writes and a wgmma descriptor reads.
  static constexpr int kSubTileCols = 64;
  static constexpr int kRowBytes = kSubTileCols * kElemBytes;           // 128
  static constexpr int kSubTiles = kHeadDim / kSubTileCols;             // 9
  static constexpr int kSubTileBytes = kBlockN * kRowBytes;             // 8 KiB (64 rows)
  static constexpr int kTileBytes = kSubTiles * kSubTileBytes;          // 72 KiB
  static constexpr int kQSubTileBytes = kBlockM * kRowBytes;            // 8 KiB (64 rows)
  static constexpr int kSwizzleAtomBytes = 8 * kRowBytes;               // 1 KiB: 8 rows

  // Warpgroups: one producer (TMA), two consumers, each owning half of the output columns.
  static constexpr int kWarpgroupThreads = 128;
  static constexpr int kConsumers = 2;
  static constexpr int kThreads = (1 + kConsumers) * kWarpgroupThreads;  // 384
  static constexpr int kProducerLanes = 32;  // the producer warpgroup's one working warp
  static constexpr int kColsPerConsumer = kHeadDimV / kConsumers;       // 256
  static constexpr int kSubTilesPerConsumerV = kColsPerConsumer / kSubTileCols;  // 4

  // Register budgets after setmaxnreg. The CTA keeps the registers it launched with (168 per
  // thread: 64 Ki over 384 threads, in steps of 8), so the consumers can only take what the
  // producer gives back: kProducerRegs + kConsumer0Regs + kConsumer1Regs <= 3 * 168.
  // Consumer 0 holds the next pair's S chain in flight across the pair (32 more accumulators).
  static constexpr int kLaunchRegs = (65536 / kThreads) / 8 * 8;
  static constexpr int kProducerRegs = 24;
  static constexpr int kConsumer0Regs = 256;
  static constexpr int kConsumer1Regs = 224;

  // wgmma shapes. Pages are taken in pairs (A, B): consumer 0 computes S for page A, consumer 1
  // for page B, each over the whole page: Q K^T as m64n64k16 (36 k-steps). O[:, 256c, +256) +=
  // P V is m64n256k16 (4 k-steps per page): the page's owner takes P from registers, the other
  // consumer from shared memory.
  static constexpr int kMmaK = 16;
  static constexpr int kQkSteps = kHeadDim / kMmaK;                      // 36
  static constexpr int kPvSteps = kBlockN / kMmaK;                       // 4
  static constexpr int kQkStepsPerSubTile = kSubTileCols / kMmaK;        // 4
  static constexpr int kSAccum = kBlockM * kBlockN / kWarpgroupThreads;  // 32 floats / thread
  static constexpr int kPRegs = kSAccum / 2;                             // 16 packed pairs
  static constexpr int kOAccum = kBlockM * kColsPerConsumer / kWarpgroupThreads;  // 128

  static constexpr int kStages = 2;  // KV pages in shared memory: the pair being computed

  // P of a page is written over the page's RoPE sub-tile (channels 512..575), which only the
  // page's Q K^T reads: no shared memory of its own.
  static constexpr int kPSubTile = kHeadDimV / kSubTileCols;             // 8

  // Shared memory: Q tile, KV stages, row statistics, barriers; +1 KiB to align the base for
  // the swizzle.
  static constexpr size_t kQBytes = size_t(kSubTiles) * kQSubTileBytes;
  static constexpr size_t kKVBytes = size_t(kStages) * kTileBytes;
  static constexpr size_t kRowStatBytes = size_t(kConsumers) * kBlockM * sizeof(float);
  // full: one per TMA box (Q K^T starts on the first box), empty: one per stage and consumer.
  // Two more for the consumers' per-pair hand-offs.
  static constexpr size_t kBarrierBytes =
      ((kSubTiles + kConsumers) * kStages + 2) * sizeof(uint64_t);
  static constexpr size_t kSmemBytes =
      kQBytes + kKVBytes + 2 * kRowStatBytes + kBarrierBytes + kSwizzleAtomBytes;

  static_assert(kHeadDim % kSubTileCols == 0 && kHeadDimV % kSubTileCols == 0);
  static_assert(kPageBlock % kBlockN == 0, "a KV tile never straddles two pages");
  static_assert(kBlockN % 8 == 0, "whole 8-row swizzle atoms per sub-tile");
  static_assert(kBlockN == 64, "each consumer's S = Q K^T is one wgmma m64n64 chain");
  static_assert(kPSubTile == kSubTiles - 1, "P overwrites the last (RoPE) sub-tile");
  static_assert(kBlockN * kElemBytes == kRowBytes, "a row of P is one 128-byte swizzle row");
  static_assert(kColsPerConsumer == 256, "O += P V uses wgmma m64n256");
  static_assert(kProducerRegs + kConsumer0Regs + kConsumer1Regs <= (1 + kConsumers) * kLaunchRegs,
                "setmaxnreg.inc would wait forever for registers no warpgroup gives back");
  static_assert(kConsumer0Regs % 8 == 0 && kConsumer1Regs % 8 == 0 && kProducerRegs % 8 == 0,
                "setmaxnreg granularity");
  static_assert(kProducerRegs >= 24 && kConsumer0Regs <= 256 && kConsumer1Regs <= 256,
                "setmaxnreg range");
  static_assert(kSmemBytes <= 232448, "227 KiB: the sm_90 per-CTA shared-memory limit");
};

// The narrow kernel (v7) for at most kNarrowRows query rows per KV head: it computes the
// transposed products S^T = K Q^T and O^T += V^T P^T, so the 64 rows of a wgmma are KV tokens
// and channels and the query rows are its N: no padding to 64 query rows. Two consumer
// warpgroups take alternate pages (one's softmax runs while the other's wgmmas do) and merge
// at the segment's end; the KV boxes stream through a ring of 8 KiB slots. An N = 32 form
// (17-32 rows, 22 slots) was slower than the wide kernel on the H100 and the H200 in every
// measured case, and was removed (docs/perf-notes.md, "The wide kernel from 17 rows").
inline constexpr int kNarrowRows = 16;

template <int kRowsN>
struct NarrowConfig {
  using Base = HopperConfig;
  static constexpr int kRows = kRowsN;     // query rows: the wgmma N
  static constexpr int kHeadDim = Base::kHeadDim;
  static constexpr int kHeadDimV = Base::kHeadDimV;
  static constexpr int kBlockN = Base::kBlockN;  // KV tokens per page: the wgmma M of S^T
  static constexpr int kPageBlock = Base::kPageBlock;
  static constexpr int kElemBytes = Base::kElemBytes;
  static constexpr int kSubTileCols = Base::kSubTileCols;
  static constexpr int kRowBytes = Base::kRowBytes;
  static constexpr int kSubTiles = Base::kSubTiles;        // boxes per page: 9
  static constexpr int kValueBoxes = kHeadDimV / kSubTileCols;  // boxes 0-7 hold V too
  static constexpr int kBoxBytes = Base::kSubTileBytes;    // 64 tokens x 128 B
  static constexpr int kSwizzleAtomBytes = Base::kSwizzleAtomBytes;
  static constexpr int kQSubTileBytes = kRows * kRowBytes; // N rows x 64 channels
  static constexpr int kPBytes = kRows * kRowBytes;        // P^T: N rows x 64 tokens

  static constexpr int kWarpgroupThreads = 128;
  static constexpr int kConsumers = 2;
  static constexpr int kThreads = (kConsumers + 1) * kWarpgroupThreads;  // + producer
  static constexpr int kWarps = kWarpgroupThreads / 32;    // warps of a consumer: 16 rows each
  static constexpr int kProducerRegs = 24;                 // setmaxnreg
  static constexpr int kConsumerRegs = 240;

  static constexpr int kMmaK = 16;
  static constexpr int kQkStepsPerBox = kSubTileCols / kMmaK;                 // 4
  static constexpr int kPvSteps = kBlockN / kMmaK;                            // 4
  static constexpr int kSAccum = kBlockN * kRows / kWarpgroupThreads;         // 8
  static constexpr int kOTiles = kHeadDimV / 64;                              // 8 m64 tiles
  static constexpr int kOAccum = kOTiles * kSAccum;                           // 64
  static constexpr int kColsPerThread = kRows / 4;  // query rows a thread's accumulators touch

  // Shared memory: Q tile (also the buffers through which the consumers swap halves of their
  // states at a segment's end), P^T of each consumer, row statistics (col_max and col_sum per
  // consumer), then as many KV box slots as fit.
  static constexpr size_t kQBytes = size_t(kSubTiles) * kQSubTileBytes;
  static constexpr size_t kStatBytes =
      size_t(2 * kConsumers) * kWarps * kRows * sizeof(float) + 2 * kRows * sizeof(int);
  static constexpr size_t kFixedBytes =
      kQBytes + size_t(kConsumers) * kPBytes + kSwizzleAtomBytes;  // + alignment
  static constexpr size_t kLimit = 232448;  // 227 KiB: the sm_90 per-CTA opt-in maximum
  static constexpr int kSlots =
      int((kLimit - kFixedBytes - kStatBytes - 64 * sizeof(uint64_t)) / kBoxBytes);
  static constexpr size_t kBarrierBytes = size_t(2) * kSlots * sizeof(uint64_t) + 2 * sizeof(uint64_t);
  static constexpr size_t kSmemBytes =
      kFixedBytes + size_t(kSlots) * kBoxBytes + kStatBytes + kBarrierBytes;

  // The merge: consumer c keeps the O^T tiles [c * kOTiles / 2, +kOTiles / 2) and sends the
  // other half with its partial sums, per thread, through its half of the Q tile.
  static constexpr int kOTilesPerConsumer = kOTiles / kConsumers;
  static constexpr int kMergeFloats = kColsPerThread + kOTilesPerConsumer * kSAccum;
  static constexpr int kMergeChunk =
      int(kQBytes / (kConsumers * kWarpgroupThreads * sizeof(float)));
  static constexpr int kMergeRounds = (kMergeFloats + kMergeChunk - 1) / kMergeChunk;

  static_assert(kRows == kNarrowRows, "wgmma N of the generated wrappers");
  static_assert(kQSubTileBytes % kSwizzleAtomBytes == 0, "whole swizzle atoms per Q sub-tile");
  static_assert(kSlots >= 2 * kSubTiles, "a consumer's page and the other consumer's");
  static_assert(kOTiles % kConsumers == 0, "the consumers keep equal halves of O^T");
  static_assert(kProducerRegs + kConsumers * kConsumerRegs <= (1 + kConsumers) * Base::kLaunchRegs);
  static_assert(kSmemBytes <= kLimit);
};
}  // namespace flash_mla::sm90
