// Hopper warp-specialised split-KV decode kernel (v6): TMA loads into 128B-swizzled shared
// memory, wgmma for Q·Kᵀ and P·V, mbarrier pipelines, setmaxnreg.
//
// Grid (num_sm_parts, m_blocks, h_kv), one CTA per SM, three warpgroups:
//   producer   warp 0 walks the CTA's (sequence, page) list and TMA-loads each 64-token page
//              (9 boxes of 64 channels) into one of two stages; for a sequence's partial last
//              page it also zeroes the tokens past the end, so NaN there cannot reach P·V;
//   consumers  take the pages of a segment in pairs (A, B). Consumer 0 owns page A: it computes
//              S_A = Q·K_Aᵀ over the whole page, its softmax against the row's reference m,
//              and publishes the new reference and P_A (written over the page's RoPE channels,
//              which nothing reads after Q·Kᵀ). Consumer 1 does the same for page B, starting
//              from consumer 0's reference. Each consumer keeps one half of the output,
//              O[:, 256c, +256), and adds both pages to it: its own page's P from registers,
//              the other's from shared memory. One consumer's softmax runs while the other's
//              GEMMs occupy the tensor cores (docs/design.md, "Hopper kernel").
// Segments, workspace slots and the epilogue follow the portable kernel (same combine kernel).
#pragma once

#include <cuda.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cmath>
#include <cstdint>

#include "kernels/common/row_finish.h"
#include "kernels/common/softmax_ref.h"
#include "kernels/common/segments.h"
#include "kernels/params.h"
#include "kernels/sm90/config.h"
#include "kernels/sm90/ptx_sm90.h"
#include "kernels/sm90/q_tile.cuh"

namespace flash_mla::sm90 {

using Cfg = HopperConfig;

enum class Role : int { kProducer = 0, kConsumer0 = 1, kConsumer1 = 2 };
// Named barrier ids (0 is __syncthreads).
enum class NamedBarrier : int {
  kConsumers = 1,  // Q tile rewritten at a segment start
  kRowSums = 2,    // both halves' row sums written (epilogue)
};

struct Smem {
  char* q;          // [9 sub-tiles][64 rows][128 B], swizzled: the query tile
  char* kv;         // [kStages][9 sub-tiles][kBlockN tokens][128 B], swizzled: K and V; P of
                    // the page over sub-tile 8 once its Q·Kᵀ is done
  float* row_ref;   // [2 pages of the pair][64 rows] softmax reference m after page A / B
  float* row_sum;   // [2 consumers][64 rows] each consumer's row sums (epilogue)
  uint64_t* full;   // [kStages][9] TMA bytes of each 64-channel box landed
  uint64_t* ready;  // [kStages] partial page zeroed by the producer (used instead of full)
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
    ready = full + Cfg::kStages * Cfg::kSubTiles;
    empty = ready + Cfg::kStages;
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

// A sequence's last page may hold fewer than kBlockN tokens; it is zeroed past the end before
// any P·V reads it (`ready`).
__device__ __forceinline__ bool partial_page(const Segment& seg, int tile) {
  return seg.token_end - tile < Cfg::kBlockN;
}

// ---------------------------------------------------------------------------------------------
// Producer
// ---------------------------------------------------------------------------------------------
__device__ __forceinline__ void zero_page_tail(char* stage, int valid, int lane) {
  // Whole 128-byte rows: the swizzle permutes chunks within a row only.
  constexpr int kChunksPerRow = Cfg::kRowBytes / 16;  // 16-byte stores per 128-byte row
  const int chunks = (Cfg::kBlockN - valid) * Cfg::kSubTiles * kChunksPerRow;
  for (int c = lane; c < chunks; c += Cfg::kProducerLanes) {
    const int row = valid + c / (Cfg::kSubTiles * kChunksPerRow);
    const int rem = c % (Cfg::kSubTiles * kChunksPerRow);
    *reinterpret_cast<uint4*>(stage + (rem / kChunksPerRow) * Cfg::kSubTileBytes +
                              row * Cfg::kRowBytes + (rem % kChunksPerRow) * 16) =
        make_uint4(0, 0, 0, 0);
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
      if (partial_page(seg, tile)) {
        for (int c = 0; c < Cfg::kSubTiles; ++c) ptx::mbarrier_wait(s.box_full(stage, c), use & 1);
        zero_page_tail(s.stage(stage), seg.token_end - tile, lane);
        ptx::fence_proxy_async_shared();
        ptx::mbarrier_arrive(&s.ready[stage]);  // every lane: each releases its own zeros
      }
    }
  });
}

// ---------------------------------------------------------------------------------------------
// Consumers
// ---------------------------------------------------------------------------------------------
// S[64 x 64] = Q·Kᵀ over 576 channels: 36 wgmma steps, both operands K-major in shared memory.
// The steps of each 64-channel box are issued once that box has landed (barrier boxes[box],
// phase parity `parity`), so the GEMM starts on the first box. Issued and committed; the
// caller waits.
// Boxes [kBoxBegin, kBoxEnd) only: a chain may be issued in parts, other wgmma groups between.
template <class Element, int kBoxBegin = 0, int kBoxEnd = Cfg::kSubTiles>
__device__ __forceinline__ void issue_scores(const char* sQ, const char* sKV, const uint64_t* boxes,
                                             uint32_t parity, float (&s)[Cfg::kSAccum]) {
  if constexpr (kBoxBegin == 0) {
#pragma unroll
    for (int k = 0; k < Cfg::kSAccum; ++k) s[k] = 0.f;
  }
  // Opaque here, so the Q descriptors (loop-invariant) are built next to their wgmma instead of
  // being hoisted out of the pair loop into 72 registers.
  asm volatile("" : "+l"(sQ));
#pragma unroll
  for (int k = kBoxBegin * Cfg::kQkStepsPerSubTile; k < kBoxEnd * Cfg::kQkStepsPerSubTile; ++k) {
    const int sub = k / Cfg::kQkStepsPerSubTile;
    if (k % Cfg::kQkStepsPerSubTile == 0) {
      // The wait is a loop: the explicit fence after it keeps ptxas from inserting its own on
      // that path and serialising the wgmmas (C7520).
      ptx::mbarrier_wait(const_cast<uint64_t*>(boxes + sub), parity);
      ptx::wgmma_fence();
    }
    const int k_bytes = (k % Cfg::kQkStepsPerSubTile) * Cfg::kMmaK * Cfg::kElemBytes;
    // K-major, 128B swizzle: LBO unused (16), SBO = one 8-row swizzle atom.
    const uint64_t da = ptx::smem_descriptor(sQ + sub * Cfg::kQSubTileBytes + k_bytes, 16,
                                             Cfg::kSwizzleAtomBytes, ptx::Swizzle::k128B);
    const uint64_t db = ptx::smem_descriptor(sKV + sub * Cfg::kSubTileBytes + k_bytes, 16,
                                             Cfg::kSwizzleAtomBytes, ptx::Swizzle::k128B);
    ptx::wgmma_ss_m64n64k16(s, da, db, k > 0 ? 1u : 0u, Element{});
  }
  ptx::wgmma_commit();
}

// V[k-step] descriptor: MN-major (transposed B), 128B swizzle, LBO = next 64-channel sub-tile,
// SBO = next 8 tokens.
__device__ __forceinline__ uint64_t v_descriptor(const char* sV, int k) {
  return ptx::smem_descriptor(sV + k * Cfg::kMmaK * Cfg::kRowBytes, Cfg::kSubTileBytes,
                              Cfg::kSwizzleAtomBytes, ptx::Swizzle::k128B);
}

// O[64 x 256] += P·V over one page, P from shared memory (K-major, like a Q sub-tile).
template <class Element>
__device__ __forceinline__ void issue_pv_shared(const char* sP, const char* sV,
                                                float (&o)[Cfg::kOAccum]) {
  ptx::wgmma_fence();
#pragma unroll
  for (int k = 0; k < Cfg::kPvSteps; ++k) {
    const uint64_t da = ptx::smem_descriptor(sP + k * Cfg::kMmaK * Cfg::kElemBytes, 16,
                                             Cfg::kSwizzleAtomBytes, ptx::Swizzle::k128B);
    ptx::wgmma_ss_m64n256k16(o, da, v_descriptor(sV, k), 1u, Element{});
  }
  ptx::wgmma_commit();
}

// O[64 x 256] += P·V over one page, P from registers: k-step k takes the packed pairs of
// S's n8 tiles 2k and 2k + 1, which is the wgmma A-fragment layout.
template <class Element>
__device__ __forceinline__ void issue_pv_registers(const uint32_t (&pr)[Cfg::kPRegs],
                                                   const char* sV, float (&o)[Cfg::kOAccum]) {
  ptx::wgmma_fence();
#pragma unroll
  for (int k = 0; k < Cfg::kPvSteps; ++k) {
    const uint32_t a[4] = {pr[4 * k], pr[4 * k + 1], pr[4 * k + 2], pr[4 * k + 3]};
    ptx::wgmma_rs_m64n256k16(o, a, v_descriptor(sV, k), 1u, Element{});
  }
  ptx::wgmma_commit();
}

// Where a thread's accumulator entries sit (wgmma m64nN): s[nt*4 + 2*half + e] is row
// r_local + 8*half of the tile, column nt*8 + 2*(lane%4) + e.
struct Coord {
  int lane, r_local, consumer;
};

// Running softmax state of the two rows a thread holds, in the base-2 domain.
struct RowState {
  float m[2];  // reference (softmax_ref.h), the same in both consumers after each page
  float l[2];  // sum over this thread's columns of the pages this consumer owns, in m's frame
};

// Softmax of the page this consumer owns, against the reference st.m: scales to the base-2
// domain (and, for kMasked, masks per row), takes the row maximum (the four threads of a quad
// hold a row) and the next reference m_new from it, writes P = exp2(s - m_new) packed to `pr`
// and to shared memory `sP` (swizzled, K-major), publishes m_new in `row_ref`, and returns
// the rescale exp2(m_old - m_new) of the state. One consumer's softmax is on the pair's critical path
// (docs/perf-notes.md, v8): a page that no row masks takes the kMasked = false form, without
// a compare and select per score.
template <class Element, bool kMasked>
__device__ __forceinline__ void page_softmax(const DecodeParams& p, const Segment& seg, int tile,
                                             int m_block, const Coord& c, float (&s)[Cfg::kSAccum],
                                             RowState& st, uint32_t (&pr)[Cfg::kPRegs],
                                             char* sP, float* row_ref, float (&rescale)[2]) {
#pragma unroll
  for (int half = 0; half < 2; ++half) {
    const int r = c.r_local + 8 * half;
    const int limit =
        kMasked ? key_limit(p, seg, (m_block * Cfg::kBlockM + r) / p.heads_per_kv) : 0;
    float mx = st.m[half];
#pragma unroll
    for (int nt = 0; nt < Cfg::kBlockN / 8; ++nt) {
#pragma unroll
      for (int e = 0; e < 2; ++e) {
        const int idx = nt * 4 + 2 * half + e;
        if constexpr (kMasked) {
          const int token = tile + nt * 8 + 2 * (c.lane % 4) + e;
          s[idx] = token < limit ? s[idx] * p.scale_log2 : -INFINITY;
        } else {
          s[idx] *= p.scale_log2;
        }
        mx = fmaxf(mx, s[idx]);
      }
    }
    mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
    mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
    const float m_new = next_reference(st.m[half], mx);
    const float ref = softmax_ref(m_new);
    rescale[half] = rescale_factor(st.m[half], m_new);
    float sum = 0.f;
#pragma unroll
    for (int nt = 0; nt < Cfg::kBlockN / 8; ++nt) {
      const float p0 = ptx::exp2_approx(s[nt * 4 + 2 * half] - ref);
      const float p1 = ptx::exp2_approx(s[nt * 4 + 2 * half + 1] - ref);
      sum += p0 + p1;
      const uint32_t packed = ptx::pack2<Element>(p0, p1);
      pr[nt * 2 + half] = packed;
      *reinterpret_cast<uint32_t*>(sP + r * Cfg::kRowBytes + ((nt ^ (r % 8)) * 16) +
                                   (c.lane % 4) * 4) = packed;
    }
    st.l[half] = st.l[half] * rescale[half] + sum;
    st.m[half] = m_new;
    if (c.lane % 4 == 0) row_ref[r] = m_new;
  }
}

// The page at `tile` needs no mask when it ends at or before `unmasked`, the smallest key
// limit over the CTA's rows (the same for every thread, so the branch does not diverge).
template <class Element>
__device__ __forceinline__ void page_softmax(const DecodeParams& p, const Segment& seg, int tile,
                                             int unmasked, int m_block, const Coord& c,
                                             float (&s)[Cfg::kSAccum], RowState& st,
                                             uint32_t (&pr)[Cfg::kPRegs], char* sP,
                                             float* row_ref, float (&rescale)[2]) {
  if (tile + Cfg::kBlockN <= unmasked) {
    page_softmax<Element, false>(p, seg, tile, m_block, c, s, st, pr, sP, row_ref, rescale);
  } else {
    page_softmax<Element, true>(p, seg, tile, m_block, c, s, st, pr, sP, row_ref, rescale);
  }
}

// The smallest key limit of the CTA's rows: that of its first row (rows are ordered by query
// index).
__device__ __forceinline__ int unmasked_end(const DecodeParams& p, const Segment& seg,
                                            int m_block) {
  return key_limit(p, seg, (m_block * Cfg::kBlockM) / p.heads_per_kv);
}

// Takes the other consumer's published reference (after its page): returns the rescale of
// this consumer's state and adopts the reference.
__device__ __forceinline__ void adopt_reference(const Coord& c, const float* row_ref,
                                                RowState& st, float (&rescale)[2]) {
#pragma unroll
  for (int half = 0; half < 2; ++half) {
    const float m_new = row_ref[c.r_local + 8 * half];
    rescale[half] = rescale_factor(st.m[half], m_new);
    st.l[half] *= rescale[half];
    st.m[half] = m_new;
  }
}

// O *= f per row; skipped when no row of the warp moved its reference (128 FMULs per thread,
// on the path to the next P·V).
__device__ __forceinline__ void rescale_output(float (&o)[Cfg::kOAccum], const float (&f)[2]) {
  if (!__any_sync(0xffffffffu, f[0] != 1.f || f[1] != 1.f)) return;
#pragma unroll
  for (int nt = 0; nt < Cfg::kColsPerConsumer / 8; ++nt) {
    o[nt * 4 + 0] *= f[0];
    o[nt * 4 + 1] *= f[0];
    o[nt * 4 + 2] *= f[1];
    o[nt * 4 + 3] *= f[1];
  }
}

template <class Element>
__device__ __forceinline__ void write_output(const DecodeParams& p, const Segment& seg, int g,
                                             int m_block, const Coord& c, const Smem& sm,
                                             const RowState& st, const float (&o)[Cfg::kOAccum]) {
  const bool split = seg.slot >= 0;
  const int consumer = c.consumer, lane = c.lane;
  // Each consumer summed the pages it owns: publish the halves, add them in a fixed order
  // (the same in both consumers, so both normalise identically).
#pragma unroll
  for (int half = 0; half < 2; ++half) {
    float l = st.l[half];
    l += __shfl_xor_sync(0xffffffffu, l, 1);
    l += __shfl_xor_sync(0xffffffffu, l, 2);
    if (lane % 4 == 0) sm.row_sum[consumer * Cfg::kBlockM + c.r_local + 8 * half] = l;
  }
  ptx::named_barrier_sync_unaligned(static_cast<int>(NamedBarrier::kRowSums),
                          Cfg::kConsumers * Cfg::kWarpgroupThreads);
#pragma unroll
  for (int half = 0; half < 2; ++half) {
    const int r = c.r_local + 8 * half;
    const float l = sm.row_sum[r] + sm.row_sum[Cfg::kBlockM + r];
    const int row = m_block * Cfg::kBlockM + r;
    if (row >= p.rows_per_kv) continue;
    const FinishedRow fin = finish_row(st.m[half], l, split);
    const float inv = fin.inv_sum, lse = fin.lse;
    const int col0 = consumer * Cfg::kColsPerConsumer + 2 * (lane % 4);
    const int i = row / p.heads_per_kv;
    const int h = g * p.heads_per_kv + row % p.heads_per_kv;
    if (split) {
      const int64_t accum_row =
          (static_cast<int64_t>(seg.slot) * p.num_heads_kv + g) * p.rows_per_kv + row;
      float* dst = p.o_accum + accum_row * Cfg::kHeadDimV + col0;
#pragma unroll
      for (int nt = 0; nt < Cfg::kColsPerConsumer / 8; ++nt) {
        *reinterpret_cast<float2*>(dst + nt * 8) =
            make_float2(o[nt * 4 + 2 * half] * inv, o[nt * 4 + 2 * half + 1] * inv);
      }
      if (consumer == 0 && lane % 4 == 0) p.lse_accum[accum_row] = lse;
    } else {
      Element* dst = static_cast<Element*>(p.out) + seg.batch * p.out_batch_stride +
                     i * p.out_seq_stride + h * p.out_head_stride + col0;
#pragma unroll
      for (int nt = 0; nt < Cfg::kColsPerConsumer / 8; ++nt) {
        *reinterpret_cast<uint32_t*>(dst + nt * 8) =
            ptx::pack2<Element>(o[nt * 4 + 2 * half] * inv, o[nt * 4 + 2 * half + 1] * inv);
      }
      if (consumer == 0 && lane % 4 == 0) {
        p.lse[seg.batch * p.lse_batch_stride + h * p.lse_head_stride + i * p.lse_seq_stride] = lse;
      }
    }
  }
}

// The consumers' view of the KV stages: page `it` of the CTA's walk sits in stage it % 2.
// Both consumers wait on every page they read (the owner for Q·Kᵀ, the other for P·V), so
// each sees the TMA bytes through its own barriers. A full page completes one phase of each
// box barrier per use of the stage; a partial page is read only after the producer zeroed its
// tail and arrived on `ready`.
struct StageWalk {
  uint32_t ready_parity = 0;  // bit s: parity of the next `ready` phase of stage s
  uint32_t page_a_parity = 0;  // parity of the next page_a / page_b hand-off (consumer 1 / 0)
  uint32_t page_b_parity = 0;

  __device__ void wait_ready(const Smem& s, int it) {
    const int stage = it % Cfg::kStages;
    ptx::mbarrier_wait(&s.ready[stage], (ready_parity >> stage) & 1u);
    ready_parity ^= 1u << stage;
  }
  __device__ static uint32_t parity(int it) { return (it / Cfg::kStages) & 1; }

  // S of page `it` (the owner), starting at token `tile`: box by box; a partial page first
  // waits for `ready` (its boxes have all landed by then).
  template <class Element, int kBoxBegin = 0, int kBoxEnd = Cfg::kSubTiles>
  __device__ void issue_scores_for(const Smem& s, int it, const Segment& seg, int tile,
                                   float (&sc)[Cfg::kSAccum]) {
    const int stage = it % Cfg::kStages;
    if (kBoxBegin == 0 && partial_page(seg, tile)) wait_ready(s, it);
    issue_scores<Element, kBoxBegin, kBoxEnd>(s.q, s.stage(stage), s.box_full(stage, 0),
                                              parity(it), sc);
  }
  // Before the other consumer's P·V on page `it`: the 4 value boxes of its half of O, and no
  // others: the owner may already have released the other half, whose barriers then move on to
  // the next page.
  __device__ void wait_values(const Smem& s, int it, const Segment& seg, int tile, int consumer) {
    if (partial_page(seg, tile)) return wait_ready(s, it);
    const int stage = it % Cfg::kStages;
#pragma unroll
    for (int c = 0; c < Cfg::kSubTilesPerConsumerV; ++c) {
      ptx::mbarrier_wait(s.box_full(stage, consumer * Cfg::kSubTilesPerConsumerV + c), parity(it));
    }
  }
  // The other consumer's hand-off of this pair (consumer 1 waits on page_a, 0 on page_b).
  __device__ void wait_page_a(const Smem& s) {
    ptx::mbarrier_wait(s.page_a, page_a_parity);
    page_a_parity ^= 1u;
  }
  __device__ void wait_page_b(const Smem& s) {
    ptx::mbarrier_wait(s.page_b, page_b_parity);
    page_b_parity ^= 1u;
  }
  // Every thread of `consumer` arrives: its P writes into the stage are released by itself.
  __device__ static void release(const Smem& s, int it, int consumer) {
    ptx::mbarrier_arrive(s.stage_empty(it % Cfg::kStages, consumer));
  }
};

// One pair of pages (A at `tile`, B at tile + 64 if has_b) for consumer 0, which owns page A
// and the left half of O. S_A is already issued into `sc` (by the previous pair, or before the
// segment's first). With kNext (page B and a next pair exist in the segment) the next pair's
// S_A is issued here too: its first half (boxes 0-3, which this consumer frees itself) before
// waiting for page B's softmax, the rest once P·V B,L is done and stage B released. kNext is a
// template argument so that no wgmma issue sits on a data-dependent branch: ptxas then need
// not serialise the chains (C7518).
template <class Element, bool kNext>
__device__ __forceinline__ void pair_consumer0(const DecodeParams& p, const Smem& s,
                                               const Segment& seg, int unmasked, int tile,
                                               bool has_b, int it, int m_block, const Coord& c,
                                               StageWalk& walk, RowState& st,
                                               float (&o)[Cfg::kOAccum],
                                               float (&sc)[Cfg::kSAccum]) {
  constexpr int kHalf = Cfg::kSubTilesPerConsumerV;
  const int stage_a = it % Cfg::kStages, stage_b = (it + 1) % Cfg::kStages;
  const int next = tile + 2 * Cfg::kBlockN;
  ptx::wgmma_wait<0>();
  uint32_t pr[Cfg::kPRegs];
  float rescale[2];
  page_softmax<Element>(p, seg, tile, unmasked, m_block, c, sc, st, pr, s.p_tile(stage_a),
                        s.row_ref, rescale);
  ptx::fence_proxy_async_shared();  // P_A written by threads, read by consumer 1's wgmma
  ptx::mbarrier_arrive(s.page_a);
  rescale_output(o, rescale);
  issue_pv_registers<Element>(pr, s.stage(stage_a), o);
  ptx::wgmma_wait<0>();
  StageWalk::release(s, it, 0);  // boxes 0-3 of stage A load while page B is computed
  if (kNext || has_b) {
    if constexpr (kNext) walk.issue_scores_for<Element, 0, kHalf>(s, it + 2, seg, next, sc);
    walk.wait_values(s, it + 1, seg, tile + Cfg::kBlockN, 0);
    walk.wait_page_b(s);
    adopt_reference(c, s.row_ref + Cfg::kBlockM, st, rescale);
    rescale_output(o, rescale);
    issue_pv_shared<Element>(s.p_tile(stage_b), s.stage(stage_b), o);
    ptx::wgmma_wait<0>();
    StageWalk::release(s, it + 1, 0);
    if constexpr (kNext) {
      walk.issue_scores_for<Element, kHalf, Cfg::kSubTiles>(s, it + 2, seg, next, sc);
    }
  }
}

// The same pair for consumer 1, which owns page B (if kHasB) and the right half of O. P·V A,R
// is queued behind S_B without waiting for it, so it starts as soon as the tensor cores finish
// S_B and page A's hand-off has come; S_B is then waited for (the older group) while P·V A,R runs.
template <class Element, bool kHasB>
__device__ __forceinline__ void pair_consumer1(const DecodeParams& p, const Smem& s,
                                               const Segment& seg, int unmasked, int tile,
                                               int it, int m_block, const Coord& c,
                                               StageWalk& walk, RowState& st,
                                               float (&o)[Cfg::kOAccum]) {
  constexpr int kRight = Cfg::kSubTilesPerConsumerV * Cfg::kSubTileBytes;  // V columns 256..511
  const int stage_a = it % Cfg::kStages, stage_b = (it + 1) % Cfg::kStages;
  float sc[Cfg::kSAccum];
  if constexpr (kHasB) walk.issue_scores_for<Element>(s, it + 1, seg, tile + Cfg::kBlockN, sc);
  walk.wait_values(s, it, seg, tile, 1);
  walk.wait_page_a(s);
  float rescale[2];
  adopt_reference(c, s.row_ref, st, rescale);
  rescale_output(o, rescale);
  issue_pv_shared<Element>(s.p_tile(stage_a), s.stage(stage_a) + kRight, o);
  uint32_t pr[Cfg::kPRegs];
  if constexpr (kHasB) {
    ptx::wgmma_wait<1>();  // S_B
    page_softmax<Element>(p, seg, tile + Cfg::kBlockN, unmasked, m_block, c, sc, st, pr,
                          s.p_tile(stage_b), s.row_ref + Cfg::kBlockM, rescale);
    ptx::fence_proxy_async_shared();  // P_B written by threads, read by consumer 0's wgmma
    ptx::mbarrier_arrive(s.page_b);
  }
  ptx::wgmma_wait<0>();
  StageWalk::release(s, it, 1);
  if constexpr (kHasB) {
    rescale_output(o, rescale);
    issue_pv_registers<Element>(pr, s.stage(stage_b) + kRight, o);
    ptx::wgmma_wait<0>();
    StageWalk::release(s, it + 1, 1);
  }
}

template <class Element>
__device__ __forceinline__ void consume(const DecodeParams& p, const Smem& s, int part, int m_block,
                                        int g, int consumer, int t) {
  const Coord c = {t % 32, (t / 32) * 16 + (t % 32) / 4, consumer};
  const int ctid = consumer * Cfg::kWarpgroupThreads + t;
  constexpr int kConsumerThreads = Cfg::kConsumers * Cfg::kWarpgroupThreads;
  int it = 0;
  StageWalk walk;
  for_each_segment(p, part, [&](const Segment& seg) {
    // Both consumers are past the previous segment's last wgmma on Q.
    ptx::named_barrier_sync_unaligned(static_cast<int>(NamedBarrier::kConsumers), kConsumerThreads);
    load_q_rows<Element, Cfg::kBlockM>(p, s.q, seg.batch, g, m_block * Cfg::kBlockM, ctid,
                                       kConsumerThreads);
    ptx::fence_proxy_async_shared();
    ptx::named_barrier_sync_unaligned(static_cast<int>(NamedBarrier::kConsumers), kConsumerThreads);

    RowState st = {{-INFINITY, -INFINITY}, {0.f, 0.f}};
    const int unmasked = unmasked_end(p, seg, m_block);
    float o[Cfg::kOAccum];
#pragma unroll
    for (int k = 0; k < Cfg::kOAccum; ++k) o[k] = 0.f;
    if (consumer == 0) {
      float sc[Cfg::kSAccum];  // S_A of the pair, issued one pair ahead
      walk.issue_scores_for<Element>(s, it, seg, seg.token_begin, sc);
      int tile = seg.token_begin;
      for (; tile + 2 * Cfg::kBlockN < seg.token_end; tile += 2 * Cfg::kBlockN, it += 2) {
        pair_consumer0<Element, true>(p, s, seg, unmasked, tile, true, it, m_block, c, walk, st,
                                      o, sc);
      }
      const bool has_b = tile + Cfg::kBlockN < seg.token_end;
      pair_consumer0<Element, false>(p, s, seg, unmasked, tile, has_b, it, m_block, c, walk, st,
                                     o, sc);
      it += has_b ? 2 : 1;
    } else {
      for (int tile = seg.token_begin; tile < seg.token_end; tile += 2 * Cfg::kBlockN) {
        if (tile + Cfg::kBlockN < seg.token_end) {
          pair_consumer1<Element, true>(p, s, seg, unmasked, tile, it, m_block, c, walk, st, o);
          it += 2;
        } else {
          pair_consumer1<Element, false>(p, s, seg, unmasked, tile, it, m_block, c, walk, st, o);
          it += 1;
        }
      }
    }
    write_output<Element>(p, seg, g, m_block, c, s, st, o);
  });
}

template <class Element>
__global__ void __launch_bounds__(Cfg::kThreads, 1)
    hopper_decode_kernel(const __grid_constant__ DecodeParams p,
                         const __grid_constant__ CUtensorMap tmap_kv) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)  // wgmma, setmaxnreg and TMA exist on sm_90a only
  extern __shared__ char smem_raw[];
  const Smem s(smem_raw);
  const int part = blockIdx.x;
  const int m_block = blockIdx.y;
  const int g = blockIdx.z;
  const Role role = static_cast<Role>(threadIdx.x / Cfg::kWarpgroupThreads);

  if (threadIdx.x == 0) {
    for (int st = 0; st < Cfg::kStages; ++st) {
      for (int c = 0; c < Cfg::kSubTiles; ++c) ptx::mbarrier_init(s.box_full(st, c), 1);
      ptx::mbarrier_init(&s.ready[st], Cfg::kProducerLanes);
      for (int c = 0; c < Cfg::kConsumers; ++c) {
        ptx::mbarrier_init(s.stage_empty(st, c), Cfg::kWarpgroupThreads);
      }
    }
    ptx::mbarrier_init(s.page_a, Cfg::kWarpgroupThreads);
    ptx::mbarrier_init(s.page_b, Cfg::kWarpgroupThreads);
    ptx::fence_mbarrier_init();
    ptx::prefetch_tensor_map(&tmap_kv);
  }
  __syncthreads();
  // A programmatic dependent launch: no global read before this (docs/design.md, "A decode call").
  ptx::griddep_wait();

  if (role == Role::kProducer) {
    ptx::setmaxnreg_dec<Cfg::kProducerRegs>();
    // One warp produces; its lanes all zero partial pages and arrive on `ready`.
    if (threadIdx.x / Cfg::kProducerLanes == 0) {
      produce(p, &tmap_kv, s, part, g, threadIdx.x % Cfg::kProducerLanes);
    }
  } else {
    // One copy of the consumer code per warpgroup, each compiled to its own register budget.
    if (role == Role::kConsumer0) {
      ptx::setmaxnreg_inc<Cfg::kConsumer0Regs>();
      consume<Element>(p, s, part, m_block, g, 0, threadIdx.x % Cfg::kWarpgroupThreads);
    } else {
      ptx::setmaxnreg_inc<Cfg::kConsumer1Regs>();
      consume<Element>(p, s, part, m_block, g, 1, threadIdx.x % Cfg::kWarpgroupThreads);
    }
  }
#endif
}

}  // namespace flash_mla::sm90
