// Tiling of the Hopper warp-specialised decode kernel (v1). Every size derives from these
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
  static constexpr int kColsPerConsumer = kHeadDimV / kConsumers;       // 256
  static constexpr int kSubTilesPerConsumerV = kColsPerConsumer / kSubTileCols;  // 4

  // Register budgets after setmaxnreg: 128 * (kProducerRegs + 2 * kConsumerRegs) <= 64 Ki.
  static constexpr int kProducerRegs = 40;
  static constexpr int kConsumerRegs = 232;

  // wgmma shapes: each consumer computes S for half the tile's tokens, Q K^T as m64n32k16
  // (36 k-steps); O += P V as m64n256k16 (4 k-steps) with P from shared memory.
  static constexpr int kMmaK = 16;
  static constexpr int kQkSteps = kHeadDim / kMmaK;                      // 36
  static constexpr int kPvSteps = kBlockN / kMmaK;                       // 4
  static constexpr int kQkStepsPerSubTile = kSubTileCols / kMmaK;        // 4
  static constexpr int kSTokens = kBlockN / kConsumers;                  // 32 per consumer
  static constexpr int kSAccum = kBlockM * kSTokens / kWarpgroupThreads;  // 16 floats / thread
  static constexpr int kOAccum = kBlockM * kColsPerConsumer / kWarpgroupThreads;  // 128

  static constexpr int kStages = 2;  // KV tiles in shared memory: one loads while one computes

  // Shared memory: Q tile, KV stages, barriers; +1 KiB to align the base for the swizzle.
  static constexpr size_t kQBytes = size_t(kSubTiles) * kQSubTileBytes;
  static constexpr size_t kKVBytes = size_t(kStages) * kTileBytes;
  static constexpr size_t kPBytes = size_t(kBlockM) * kRowBytes;        // P: 64 x 64, swizzled
  static constexpr size_t kRowStatBytes = size_t(kConsumers) * kBlockM * sizeof(float);
  static constexpr size_t kBarrierBytes = 3 * kStages * sizeof(uint64_t);  // full, ready, empty
  static constexpr size_t kSmemBytes = kQBytes + kKVBytes + kPBytes + 2 * kRowStatBytes +
                                       kBarrierBytes + kSwizzleAtomBytes;

  static_assert(kHeadDim % kSubTileCols == 0 && kHeadDimV % kSubTileCols == 0);
  static_assert(kPageBlock % kBlockN == 0, "a KV tile never straddles two pages");
  static_assert(kBlockN % 8 == 0, "whole 8-row swizzle atoms per sub-tile");
  static_assert(kSTokens == 32, "each consumer's S = Q K^T is one wgmma m64n32 chain");
  static_assert(kBlockN * kElemBytes == kRowBytes, "a row of P is one 128-byte swizzle row");
  static_assert(kColsPerConsumer == 256, "O += P V uses wgmma m64n256");
  static_assert(kWarpgroupThreads * (kProducerRegs + kConsumers * kConsumerRegs) <= 65536);
  static_assert(kConsumerRegs % 8 == 0 && kProducerRegs % 8 == 0, "setmaxnreg granularity");
  static_assert(kSmemBytes <= 232448, "227 KiB: the sm_90 per-CTA shared-memory limit");
};

}  // namespace flash_mla::sm90
