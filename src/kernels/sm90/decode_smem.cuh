// The wide Hopper kernel's shared memory, warpgroup roles and named barriers
// (decode_kernel.cuh; budget and barrier table in docs/design.md).
#pragma once

#include <cstdint>

#include "kernels/common/segments.h"
#include "kernels/sm90/config.h"
#include "kernels/sm90/ptx_sm90.h"

namespace flash_mla::sm90 {

using Cfg = HopperConfig;

enum class Role : int { kProducer = 0, kConsumer0 = 1, kConsumer1 = 2 };
// Named barrier ids (0 is __syncthreads).
enum class NamedBarrier : int {
  kConsumers = 1,  // Q tile rewritten at a segment start
  kRowSums = 2,    // both halves' row sums written (epilogue)
};

// Where consumer 0 issues the next pair's S_A (its page A sits in the stage that this pair's
// page A frees). Both orders issue it before the next pair begins, so consumer 0's softmax of it
// runs under consumer 1's S_B (v10).
enum class NextScores : int {
  // Boxes 0-3 right after P·V A,L frees them, the rest after P·V B,L (v10). The wait for those
  // four refills then precedes P·V B,L and the release of stage B. One m-block per part.
  kSplit,
  // All nine after P·V B,L and the release of stage B's boxes 0-3 (v15), so that release no
  // longer waits for a load. With co-readers (m_blocks > 1): +0.7 to +1.9% at 128 and 256 rows,
  // but -0.1 to -1.2% at 64 rows with equal lengths (docs/perf-notes.md, "v15").
  kAfterPageB,
};

struct Smem {
  char* q;          // [9 sub-tiles][64 rows][128 B], swizzled: the query tile
  char* kv;         // [kStages][9 sub-tiles][kBlockN tokens][128 B], swizzled: K and V; P of
                    // the page over sub-tile 8 once its Q·Kᵀ is done
  float* row_ref;   // [2 pages of the pair][64 rows] softmax reference m after page A / B
  float* row_sum;   // [2 consumers][64 rows] each consumer's row sums (epilogue)
  uint64_t* full;   // [kStages][9] TMA bytes of each 64-channel box landed
  uint64_t* empty;  // [kStages][2] consumer c done with its share of the stage (128 arrivals):
                    // consumer 0's frees boxes 0-3 (V columns 0..255), consumer 1's with it
                    // frees boxes 4-8, so the next page's first boxes load while consumer 1
                    // still reads the stage
  // Hand-offs between the consumers, one phase per pair (every consumer thread arrives after
  // its own writes, so each write is released by its writer):
  uint64_t* page_a;  // consumer 0 -> 1: references after page A and P_A written (128 arrivals)
  uint64_t* page_b;  // consumer 1 -> 0: references after page B and P_B written (128 arrivals)

  // `raw` is the dynamic shared-memory array: the base is aligned by an offset from it (not
  // through an integer cast), so the compiler keeps the shared address space and emits
  // LDS/STS rather than generic loads and stores.
  __device__ explicit Smem(char* raw) {
    const uint32_t misalign = ptx::smem_addr(raw) & (Cfg::kSwizzleAtomBytes - 1);
    q = raw + ((Cfg::kSwizzleAtomBytes - misalign) & (Cfg::kSwizzleAtomBytes - 1));
    kv = q + Cfg::kQBytes;
    row_ref = reinterpret_cast<float*>(kv + Cfg::kKVBytes);
    row_sum = row_ref + Cfg::kConsumers * Cfg::kBlockM;
    full = reinterpret_cast<uint64_t*>(row_sum + Cfg::kConsumers * Cfg::kBlockM);
    empty = full + Cfg::kStages * Cfg::kSubTiles;
    page_a = empty + Cfg::kStages * Cfg::kConsumers;
    page_b = page_a + 1;
  }
  __device__ char* stage(int s) const { return kv + s * Cfg::kTileBytes; }
  __device__ uint64_t* box_full(int s, int box) const { return full + s * Cfg::kSubTiles + box; }
  __device__ char* p_tile(int s) const { return stage(s) + Cfg::kPSubTile * Cfg::kSubTileBytes; }
  __device__ uint64_t* stage_empty(int s, int consumer) const {
    return empty + s * Cfg::kConsumers + consumer;
  }
};

}  // namespace flash_mla::sm90
