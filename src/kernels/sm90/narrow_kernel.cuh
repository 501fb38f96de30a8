// Hopper narrow split-KV decode kernel (v7) for at most 32 query rows per KV head.
//
// The wide kernel (decode_kernel.cuh) puts query rows along the wgmma M, which is 64: with 16
// rows three quarters of its tensor work is padding, and on an H200 that work, not the memory,
// set the pace. This kernel computes the transposed products
//   S^T[64 tokens x N]    = K[64 x 576] · Q^T[576 x N]        (36 x wgmma m64nNk16)
//   O^T[512 x N]         += V^T[512 x 64] · P^T[64 x N]        (8 channel tiles x 4 k-steps)
// with N = 16 or 32 query rows, so no tensor work is padding beyond N.
//
// Grid (num_sm_parts, 1, h_kv), 384 threads:
//   consumers    two warpgroups; consumer c takes pages c, c + 2, ... of each segment with its
//                own running maximum, sums and O^T, so one's softmax runs while the other's
//                wgmmas occupy the tensor cores. Per page: S^T, the column (query row) softmax
//                -- each warp holds 16 tokens, so the maximum over the page's 64 tokens goes
//                through shared memory --, P^T to shared memory, O^T += V^T P^T. V rows past a
//                sequence's end are zeroed before P·V reads them, so NaN there cannot reach
//                the output. At a segment's end the consumers swap halves of their states
//                through the (then unused) Q tile: each merges and writes half of the output.
//   producer     one thread TMA-loads each page as 9 boxes of 64 channels into a ring of 8 KiB
//                slots, each slot with a `full` and an `empty` mbarrier. A slot is free again
//                once its reader is done: the RoPE box after Q·Kᵀ, the value boxes after P·V.
//                The ring holds 25 (N = 16) or 22 (N = 32) boxes.
// Segments, workspace slots and the epilogue's meaning follow the other kernels (same combine).
#pragma once

#include <cuda.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cmath>
#include <cstdint>
#include <type_traits>

#include "kernels/common/row_finish.h"
#include "kernels/common/softmax_ref.h"
#include "kernels/common/segments.h"
#include "kernels/params.h"
#include "kernels/sm90/config.h"
#include "kernels/sm90/ptx_sm90.h"
#include "kernels/sm90/q_tile.cuh"

namespace flash_mla::sm90 {

template <int kRows>
struct NarrowSmem {
  using C = NarrowConfig<kRows>;
  char* q;          // [9 sub-tiles][kRows rows][128 B], swizzled: the query tile
  char* p;          // [2 consumers][kRows rows][64 tokens] P^T of a page, K-major, swizzled
  char* ring;       // [kSlots][64 tokens][128 B], swizzled: KV boxes
  float* col_max;   // [2 consumers][warps][kRows] each warp's column maxima of its page
  float* col_sum;   // [2 consumers][warps][kRows] each warp's column sums (epilogue)
  int* col_limit;   // [kRows] tokens a query row may see in the current segment (causal mask)
  uint64_t* full;   // [kSlots] the box's TMA bytes landed
  uint64_t* empty;  // [kSlots] the box's consumer is done with it (128 arrivals)
  // Hand-offs between the consumers (128 arrivals: every thread of the signalling consumer,
  // after its own writes), strictly alternating: 1 -> 0 on to0, then 0 -> 1 on to1.
  uint64_t* to0;
  uint64_t* to1;

  // Aligned by an offset from the __shared__ array (LDS/STS, not generic accesses).
  __device__ explicit NarrowSmem(char* raw) {
    const uint32_t misalign = ptx::smem_addr(raw) & (C::kSwizzleAtomBytes - 1);
    q = raw + ((C::kSwizzleAtomBytes - misalign) & (C::kSwizzleAtomBytes - 1));
    p = q + C::kQBytes;
    ring = p + C::kConsumers * C::kPBytes;
    col_max = reinterpret_cast<float*>(ring + size_t(C::kSlots) * C::kBoxBytes);
    col_sum = col_max + C::kConsumers * C::kWarps * kRows;
    col_limit = reinterpret_cast<int*>(col_sum + C::kConsumers * C::kWarps * kRows);
    // col_limit's reservation is 2 kRows ints of which kRows are used (kStatBytes): a spare
    // 64 or 128 bytes, kept because removing it moves the barriers (not re-measured yet).
    full = reinterpret_cast<uint64_t*>(col_limit + 2 * kRows);
    empty = full + C::kSlots;
    to0 = empty + C::kSlots;
    to1 = to0 + 1;
  }
  __device__ char* slot(int i) const { return ring + i * C::kBoxBytes; }
};

// Box `n` of the CTA's walk (9 per page, in page order) sits in slot n % kSlots, in that slot's
// use n / kSlots: the parity its barriers wait for. The consumers take alternate pages, so a
// slot's consecutive fills may go to different consumers (see narrow_page's waits).
template <int kSlots>
struct RingPos {
  int slot;
  uint32_t phase;
  __device__ explicit RingPos(uint32_t box) : slot(box % kSlots), phase((box / kSlots) & 1u) {}
};

// ---------------------------------------------------------------------------------------------
// Producer (one thread)
// ---------------------------------------------------------------------------------------------
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
      for (int c = 0; c < C::kSubTiles; ++c, ++box) {
        const RingPos<C::kSlots> pos(box);
        if (box >= uint32_t(C::kSlots)) ptx::mbarrier_wait(&s.empty[pos.slot], pos.phase ^ 1u);
        ptx::mbarrier_arrive_expect_tx(&s.full[pos.slot], C::kBoxBytes);
        ptx::tma_load_4d(s.slot(pos.slot), tmap, &s.full[pos.slot], c * C::kSubTileCols,
                         tile % C::kPageBlock, g, page, policy);
      }
    }
  });
}

// ---------------------------------------------------------------------------------------------
// Consumer warpgroup
// ---------------------------------------------------------------------------------------------
// Named barriers (0 is __syncthreads), one per consumer warpgroup. Between the consumers the
// hand-offs are mbarriers (NarrowHandoff): with a 256-thread named barrier instead, racecheck
// reported the merge's exchanges as races.
enum class NarrowBarrier : int {
  kConsumer0 = 1,  // consumer 0's 128 threads
  kConsumer1 = 2,  // consumer 1's 128 threads
};

template <NarrowBarrier kId>
__device__ __forceinline__ void sync_warpgroup() {
  ptx::named_barrier_sync<static_cast<int>(kId), 128>();
}
__device__ __forceinline__ void sync_consumer(int consumer) {
  // Immediate ids (not 1 + consumer in a register), so ptxas knows each bar.sync's barrier.
  if (consumer == 0) {
    sync_warpgroup<NarrowBarrier::kConsumer0>();
  } else {
    sync_warpgroup<NarrowBarrier::kConsumer1>();
  }
}

// One consumer's side of the strictly alternating hand-offs: consumer 1 signals first, each
// signal after waiting for the other's previous one, so no barrier is ever two phases ahead.
struct NarrowHandoff {
  uint64_t* in;   // the other consumer signals here
  uint64_t* out;  // this consumer signals here
  uint32_t parity = 0;
  __device__ void signal() const { ptx::mbarrier_arrive(out); }
  __device__ void await() {
    ptx::mbarrier_wait(in, parity);
    parity ^= 1u;
  }
  // Both consumers past this point, with each other's writes visible (consumer 1 first).
  __device__ void exchange(int consumer) {
    if (consumer == 1) {
      signal();
      await();
    } else {
      await();
      signal();
    }
  }
};

template <class Element>
__device__ __forceinline__ Element to_element(float x) {
  if constexpr (std::is_same_v<Element, __nv_bfloat16>) {
    return __float2bfloat16_rn(x);
  } else {
    return __float2half_rn(x);
  }
}

template <class Element, int kRows>
__device__ __forceinline__ void wgmma_scores(float (&d)[NarrowConfig<kRows>::kSAccum],
                                             uint64_t da, uint64_t db, uint32_t accumulate) {
  if constexpr (kRows == 16) {
    ptx::wgmma_ss_m64n16k16(d, da, db, accumulate, Element{});
  } else {
    ptx::wgmma_ss_m64n32k16(d, da, db, accumulate, Element{});
  }
}

template <class Element, int kRows>
__device__ __forceinline__ void wgmma_values(float (&d)[NarrowConfig<kRows>::kSAccum],
                                             uint64_t da, uint64_t db) {
  if constexpr (kRows == 16) {
    ptx::wgmma_ss_m64n16k16_ta(d, da, db, 1u, Element{});
  } else {
    ptx::wgmma_ss_m64n32k16_ta(d, da, db, 1u, Element{});
  }
}

// Accumulator coordinates (wgmma m64nN, warp w holds M rows [16w, 16w + 16)): entry
// nt*4 + 2*half + e is M row 16w + lane/4 + 8*half, N column nt*8 + 2*(lane%4) + e. A thread's
// N columns (query rows) are indexed j = nt*2 + e.
__device__ __forceinline__ int narrow_col(int j, int lane) {
  return (j / 2) * 8 + 2 * (lane % 4) + (j % 2);
}

// One consumer's running state over the pages it took: per thread, its query-row columns'
// maxima (base-2 domain) and partial sums over its tokens, and its entries of O^T.
template <int kRows>
struct NarrowState {
  using C = NarrowConfig<kRows>;
  float m[C::kColsPerThread];
  float l[C::kColsPerThread];
  float o[C::kOTiles][C::kSAccum];

  __device__ void reset() {
#pragma unroll
    for (int j = 0; j < C::kColsPerThread; ++j) {
      m[j] = -INFINITY;
      l[j] = 0.f;
    }
#pragma unroll
    for (int jt = 0; jt < C::kOTiles; ++jt) {
#pragma unroll
      for (int k = 0; k < C::kSAccum; ++k) o[jt][k] = 0.f;
    }
  }
  // O^T *= f of each entry's query-row column.
  __device__ void scale_o(const float (&f)[C::kColsPerThread]) {
#pragma unroll
    for (int jt = 0; jt < C::kOTiles; ++jt) {
#pragma unroll
      for (int k = 0; k < C::kSAccum; ++k) o[jt][k] *= f[(k / 4) * 2 + (k % 2)];
    }
  }
  // The i-th of the kMergeFloats values a merge round moves: the partial sums, then the O^T
  // tiles of half `kHalf` (the other consumer's half to send, this consumer's to receive).
  // Called with compile-time kHalf and, once unrolled, i, so O stays in registers.
  template <int kHalf>
  __device__ float& merged(int i) {
    if (i < C::kColsPerThread) return l[i];
    const int k = i - C::kColsPerThread;
    return o[kHalf * C::kOTilesPerConsumer + k / C::kSAccum][k % C::kSAccum];
  }
};

// Column softmax of one page for consumer `consumer`, in the base-2 domain: masks S^T in place,
// takes each query row's maximum over the page's 64 tokens (within a warp, then across the 4
// warps through `col_max`), moves the references, writes P^T = exp2(S^T - m) to the consumer's
// P^T buffer, updates the sums and returns each column's rescale of O^T.
template <class Element, int kRows>
__device__ __forceinline__ void narrow_softmax(
    const DecodeParams& p, const NarrowSmem<kRows>& s, int tile, int consumer, int t,
    float (&sc)[NarrowConfig<kRows>::kSAccum], NarrowState<kRows>& st,
    float (&rescale)[NarrowConfig<kRows>::kColsPerThread]) {
  using C = NarrowConfig<kRows>;
  constexpr int kCols = C::kColsPerThread;
  const int lane = t % 32, warp = t / 32;
  const int m_row = 16 * warp + lane / 4;  // + 8*half: the thread's token rows of S^T
  char* sP = s.p + consumer * C::kPBytes;
  float* col_max = s.col_max + consumer * C::kWarps * kRows;

  // Each step is issued for every column before the next step: a shared-memory load that
  // follows a store in program order waits for it (ptxas cannot tell that they do not alias),
  // and with one column at a time each column's loads, shuffles and exponentials waited for the
  // previous column's stores (docs/perf-notes.md, v11).
  int limit[kCols];
#pragma unroll
  for (int j = 0; j < kCols; ++j) limit[j] = s.col_limit[narrow_col(j, lane)];
  float mx[kCols];
#pragma unroll
  for (int j = 0; j < kCols; ++j) {
    mx[j] = -INFINITY;
#pragma unroll
    for (int half = 0; half < 2; ++half) {
      const int idx = (j / 2) * 4 + 2 * half + (j % 2);
      const int token = tile + m_row + 8 * half;
      sc[idx] = token < limit[j] ? sc[idx] * p.scale_log2 : -INFINITY;
      mx[j] = fmaxf(mx[j], sc[idx]);
    }
  }
  // A column's 16 tokens of this warp sit in the 8 lanes with the same lane % 4.
#pragma unroll
  for (int lanes = 4; lanes < 32; lanes *= 2) {
#pragma unroll
    for (int j = 0; j < kCols; ++j) {
      mx[j] = fmaxf(mx[j], __shfl_xor_sync(0xffffffffu, mx[j], lanes));
    }
  }
  if (lane < 4) {
#pragma unroll
    for (int j = 0; j < kCols; ++j) col_max[warp * kRows + narrow_col(j, lane)] = mx[j];
  }
  sync_consumer(consumer);  // (A) all warps' maxima written
  // Every warp's maxima read before the first P^T store.
#pragma unroll
  for (int j = 0; j < kCols; ++j) {
    const int col = narrow_col(j, lane);
    mx[j] = st.m[j];
#pragma unroll
    for (int w = 0; w < C::kWarps; ++w) mx[j] = fmaxf(mx[j], col_max[w * kRows + col]);
  }
#pragma unroll
  for (int j = 0; j < kCols; ++j) {
    const int col = narrow_col(j, lane);
    const float m_new = next_reference(st.m[j], mx[j]);  // moves only by more than 2^8
    const float ref = softmax_ref(m_new);
    rescale[j] = rescale_factor(st.m[j], m_new);
    st.m[j] = m_new;
    float sum = 0.f;
#pragma unroll
    for (int half = 0; half < 2; ++half) {
      const int idx = (j / 2) * 4 + 2 * half + (j % 2);
      const float pv = ptx::exp2_approx(sc[idx] - ref);
      sum += pv;
      // P^T row `col` (a query row), column = token: K-major for the P·V B operand.
      const int tt = m_row + 8 * half;
      *reinterpret_cast<Element*>(sP + col * C::kRowBytes + (((tt / 8) ^ (col % 8)) * 16) +
                                  (tt % 8) * C::kElemBytes) = to_element<Element>(pv);
    }
    st.l[j] = st.l[j] * rescale[j] + sum;
  }
}

// One page for consumer `consumer`: S^T, softmax, O^T += V^T P^T, then the page's slots freed.
template <class Element, int kRows>
__device__ __forceinline__ void narrow_page(const DecodeParams& p, const NarrowSmem<kRows>& s,
                                            const Segment& seg, int tile, uint32_t box0,
                                            int consumer, int t, NarrowState<kRows>& st) {
  using C = NarrowConfig<kRows>;
  constexpr int kCols = C::kColsPerThread;
  const char* sP = s.p + consumer * C::kPBytes;

  // S^T = K Q^T, box by box as the boxes land, as two accumulator chains (even and odd
  // k-steps): a wgmma that depends on the previous one's accumulator waits ~100 cycles for it,
  // against 8 or 16 of tensor work at N = 16 / 32 (docs/perf-notes.md, v8).
  float sc[C::kSAccum], sc_odd[C::kSAccum];
#pragma unroll
  for (int c = 0; c < C::kSubTiles; ++c) {
    const RingPos<C::kSlots> box(box0 + c);
    // The slot's previous fill may be the other consumer's, and may not have landed yet if
    // this consumer runs a page ahead: its `full` would then still be in the phase before,
    // whose parity is the one waited for here, and the wait would pass early. The previous
    // fill's release (its `empty` phase) comes after its landing, so wait for that first.
    if (box0 + c >= uint32_t(C::kSlots)) ptx::mbarrier_wait(&s.empty[box.slot], box.phase ^ 1u);
    // The waits are loops: the explicit fence after them keeps ptxas from inserting its own
    // on that path and serialising the wgmmas (C7520).
    ptx::mbarrier_wait(&s.full[box.slot], box.phase);
    ptx::wgmma_fence();
#pragma unroll
    for (int kk = 0; kk < C::kQkStepsPerBox; ++kk) {
      const int k_bytes = kk * C::kMmaK * C::kElemBytes;
      const uint64_t da = ptx::smem_descriptor(s.slot(box.slot) + k_bytes, 16,
                                               C::kSwizzleAtomBytes, ptx::Swizzle::k128B);
      const uint64_t db = ptx::smem_descriptor(s.q + c * C::kQSubTileBytes + k_bytes, 16,
                                               C::kSwizzleAtomBytes, ptx::Swizzle::k128B);
      const uint32_t accumulate = c > 0 || kk >= 2 ? 1u : 0u;  // not a chain's first step
      wgmma_scores<Element, kRows>(kk % 2 == 0 ? sc : sc_odd, da, db, accumulate);
    }
  }
  ptx::wgmma_commit();
  ptx::wgmma_wait<0>();
#pragma unroll
  for (int k = 0; k < C::kSAccum; ++k) sc[k] += sc_odd[k];  // a fixed order: run-to-run identical
  // The RoPE box has no other reader.
  ptx::mbarrier_arrive(&s.empty[RingPos<C::kSlots>(box0 + C::kSubTiles - 1).slot]);

  float rescale[kCols];
  narrow_softmax<Element, kRows>(p, s, tile, consumer, t, sc, st, rescale);

  // A sequence's last page: V rows past its end may hold anything (NaN); P is 0 there, and
  // 0 * NaN is NaN, so zero them before P·V reads them. (Skipping P·V's k-steps past the end
  // instead puts the wgmmas on a divergent path, which ptxas serialises: C7520.)
  const int valid = seg.token_end - tile;
  if (valid < C::kBlockN) {
    constexpr int kChunks = C::kRowBytes / 16;
    for (int c = t; c < (C::kBlockN - valid) * C::kValueBoxes * kChunks;
         c += C::kWarpgroupThreads) {
      const int row = valid + c / (C::kValueBoxes * kChunks);
      const int box = (c / kChunks) % C::kValueBoxes;
      *reinterpret_cast<uint4*>(s.slot(RingPos<C::kSlots>(box0 + box).slot) +
                                row * C::kRowBytes + (c % kChunks) * 16) = make_uint4(0, 0, 0, 0);
    }
  }
  ptx::fence_proxy_async_shared();              // P^T and zeros: read by the wgmma
  sync_consumer(consumer);  // (B) P^T complete; every warp read col_max

  // O^T = O^T * rescale + V^T P^T; the multiplies only where a query row of the warp moved its
  // reference (most pages move none).
  bool moved = false;
#pragma unroll
  for (int j = 0; j < kCols; ++j) moved |= rescale[j] != 1.f;
  if (__any_sync(0xffffffffu, moved)) {
#pragma unroll
    for (int jt = 0; jt < C::kOTiles; ++jt) {
#pragma unroll
      for (int k = 0; k < C::kSAccum; ++k) {
        st.o[jt][k] *= rescale[(k / 4) * 2 + (k % 2)];
        // Pins the product before the fence below: a multiply the compiler sinks past it makes
        // ptxas fence each wgmma on its own (C7519).
        asm volatile("" : "+f"(st.o[jt][k]));
      }
    }
  }
  ptx::wgmma_fence();
#pragma unroll
  for (int k = 0; k < C::kPvSteps; ++k) {
    const uint64_t db = ptx::smem_descriptor(sP + k * C::kMmaK * C::kElemBytes, 16,
                                             C::kSwizzleAtomBytes, ptx::Swizzle::k128B);
#pragma unroll
    for (int jt = 0; jt < C::kOTiles; ++jt) {
      // V^T: MN-major (channels contiguous), 8-token groups 1 KiB apart.
      const uint64_t da = ptx::smem_descriptor(
          s.slot(RingPos<C::kSlots>(box0 + jt).slot) + k * C::kMmaK * C::kRowBytes,
          C::kBoxBytes, C::kSwizzleAtomBytes, ptx::Swizzle::k128B);
      wgmma_values<Element, kRows>(st.o[jt], da, db);
    }
  }
  ptx::wgmma_commit();
  ptx::wgmma_wait<0>();
#pragma unroll
  for (int c = 0; c < C::kValueBoxes; ++c) {
    ptx::mbarrier_arrive(&s.empty[RingPos<C::kSlots>(box0 + c).slot]);
  }
}

// Consumer kConsumer writes its half of the merged state (O^T tiles [kConsumer * kOTiles / 2,
// +kOTiles / 2), channels [256 kConsumer, +256)): out, or the fp32 partials of a split piece;
// consumer 0 also lse. Both consumers hold the same sums after the merge and reduce them in the
// same order, so both normalise identically.
template <class Element, int kRows, int kConsumer>
__device__ __forceinline__ void narrow_epilogue(const DecodeParams& p, const NarrowSmem<kRows>& s,
                                                const Segment& seg, int g, int t,
                                                NarrowState<kRows>& st) {
  using C = NarrowConfig<kRows>;
  constexpr int kCols = C::kColsPerThread;
  constexpr int kTile0 = kConsumer * C::kOTilesPerConsumer;
  const int lane = t % 32, warp = t / 32;
  const int m_row = 16 * warp + lane / 4;  // + 8*half: the thread's channels of a 64-tile
  float* col_sum = s.col_sum + kConsumer * C::kWarps * kRows;
  // Column sums over the 64 token rows: lanes, then warps in a fixed order.
#pragma unroll
  for (int j = 0; j < kCols; ++j) {
    float l = st.l[j];
    l += __shfl_xor_sync(0xffffffffu, l, 4);
    l += __shfl_xor_sync(0xffffffffu, l, 8);
    l += __shfl_xor_sync(0xffffffffu, l, 16);
    if (lane < 4) col_sum[warp * kRows + narrow_col(j, lane)] = l;
  }
  sync_consumer(kConsumer);
  const bool split = seg.slot >= 0;
#pragma unroll
  for (int j = 0; j < kCols; ++j) {
    const int row = narrow_col(j, lane);
    if (row >= p.rows_per_kv) continue;
    float sum = 0.f;
#pragma unroll
    for (int w = 0; w < C::kWarps; ++w) sum += col_sum[w * kRows + row];
    const FinishedRow fin = finish_row(st.m[j], sum, split);
    const float inv = fin.inv_sum, lse = fin.lse;
    const int i = row / p.heads_per_kv;
    const int h = g * p.heads_per_kv + row % p.heads_per_kv;
    const int idx0 = (j / 2) * 4 + (j % 2);  // + 2*half
    const bool writes_lse = kConsumer == 0 && warp == 0 && lane < 4;
    if (split) {
      const int64_t accum_row =
          (static_cast<int64_t>(seg.slot) * p.num_heads_kv + g) * p.rows_per_kv + row;
      float* dst = p.o_accum + accum_row * C::kHeadDimV + m_row;
#pragma unroll
      for (int jt = kTile0; jt < kTile0 + C::kOTilesPerConsumer; ++jt) {
#pragma unroll
        for (int half = 0; half < 2; ++half) {
          dst[jt * 64 + 8 * half] = st.o[jt][idx0 + 2 * half] * inv;
        }
      }
      if (writes_lse) p.lse_accum[accum_row] = lse;
    } else {
      Element* dst = static_cast<Element*>(p.out) + seg.batch * p.out_batch_stride +
                     i * p.out_seq_stride + h * p.out_head_stride + m_row;
#pragma unroll
      for (int jt = kTile0; jt < kTile0 + C::kOTilesPerConsumer; ++jt) {
#pragma unroll
        for (int half = 0; half < 2; ++half) {
          dst[jt * 64 + 8 * half] = to_element<Element>(st.o[jt][idx0 + 2 * half] * inv);
        }
      }
      if (writes_lse) {
        p.lse[seg.batch * p.lse_batch_stride + h * p.lse_head_stride + i * p.lse_seq_stride] =
            lse;
      }
    }
  }
}

// At a segment's end the two consumers' states become one, each consumer keeping half of O^T:
// consumer c keeps tiles [c * kOTiles / 2, +kOTiles / 2) and hands the other half, with its
// partial sums, to the other consumer, through its half of the Q tile (free then). Both
// directions in each round, so each consumer moves half of what one consumer handing everything
// to the other would.
template <int kRows, int kConsumer>
__device__ __forceinline__ void narrow_merge(const NarrowSmem<kRows>& s, int t,
                                             NarrowHandoff& handoff, NarrowState<kRows>& st) {
  using C = NarrowConfig<kRows>;
  constexpr int kCols = C::kColsPerThread;
  constexpr int kOther = 1 - kConsumer;
  // Each direction's round buffer: [value][128 threads] floats.
  float* send = reinterpret_cast<float*>(s.q) + kConsumer * C::kMergeChunk * C::kWarpgroupThreads;
  const float* recv =
      reinterpret_cast<const float*>(s.q) + kOther * C::kMergeChunk * C::kWarpgroupThreads;
  // The maxima go through each consumer's P^T buffer: [column][128 threads] floats.
  float* my_max = reinterpret_cast<float*>(s.p + kConsumer * C::kPBytes);
  const float* other_max = reinterpret_cast<const float*>(s.p + kOther * C::kPBytes);
  static_assert(kCols * C::kWarpgroupThreads * sizeof(float) <= C::kPBytes);
  // Thread t of both consumers holds the same entries. First the maxima both ways: each
  // consumer rescales its own sums and O^T to the common maximum (fmaxf is symmetric, so both
  // get the same). Then per round both write, exchange, read and add, exchange (the buffers
  // are free again; after the last round, Q is).
  sync_consumer(kConsumer);  // every warp's last P·V done: the P^T buffer is free
#pragma unroll
  for (int j = 0; j < kCols; ++j) my_max[j * C::kWarpgroupThreads + t] = st.m[j];
  handoff.exchange(kConsumer);
  float scale[kCols];
#pragma unroll
  for (int j = 0; j < kCols; ++j) {
    const float m = fmaxf(st.m[j], other_max[j * C::kWarpgroupThreads + t]);
    scale[j] = ptx::exp2_approx(st.m[j] - softmax_ref(m));
    st.m[j] = m;
    st.l[j] *= scale[j];
  }
  st.scale_o(scale);
#pragma unroll
  for (int r = 0; r < C::kMergeRounds; ++r) {
    const int i0 = r * C::kMergeChunk;
#pragma unroll
    for (int i = 0; i < C::kMergeChunk; ++i) {
      if (i0 + i < C::kMergeFloats) {
        send[i * C::kWarpgroupThreads + t] = st.template merged<kOther>(i0 + i);
      }
    }
    handoff.exchange(kConsumer);  // round r written by both
#pragma unroll
    for (int i = 0; i < C::kMergeChunk; ++i) {
      if (i0 + i < C::kMergeFloats) {
        // Own value plus the other's: a + b == b + a, so both consumers' sums are identical.
        st.template merged<kConsumer>(i0 + i) += recv[i * C::kWarpgroupThreads + t];
      }
    }
    handoff.exchange(kConsumer);  // round r read by both
  }
}

template <class Element, int kRows>
__device__ __forceinline__ void narrow_consume(const DecodeParams& p, const NarrowSmem<kRows>& s,
                                               int part, int g, int consumer, int t) {
  using C = NarrowConfig<kRows>;
  constexpr int kBothThreads = C::kConsumers * C::kWarpgroupThreads;
  uint32_t box = 0;  // the segment's first box in the CTA's walk
  NarrowHandoff handoff{consumer == 0 ? s.to0 : s.to1, consumer == 0 ? s.to1 : s.to0};

  for_each_segment(p, part, [&](const Segment& seg) {
    // Both consumers are past the previous segment's merge, which followed their last wgmma
    // on Q and their last reads of the merge buffer.
    load_q_rows<Element, kRows>(p, s.q, seg.batch, g, 0, consumer * C::kWarpgroupThreads + t,
                                kBothThreads);
    if (consumer == 0 && t < kRows) {
      s.col_limit[t] = key_limit(p, seg, t / p.heads_per_kv);
    }
    ptx::fence_proxy_async_shared();  // Q: thread writes read by the wgmma
    sync_consumer(consumer);          // this consumer's part of Q written
    handoff.exchange(consumer);       // the other's too

    NarrowState<kRows> st;
    st.reset();

    int page = consumer;
    for (int tile = seg.token_begin + consumer * C::kBlockN; tile < seg.token_end;
         tile += C::kConsumers * C::kBlockN, page += C::kConsumers) {
      narrow_page<Element, kRows>(p, s, seg, tile, box + page * C::kSubTiles, consumer, t, st);
    }
    box += ((seg.token_end - seg.token_begin + C::kBlockN - 1) / C::kBlockN) * C::kSubTiles;

    // Template arguments, so that each consumer's half of O^T is indexed by constants.
    if (consumer == 0) {
      narrow_merge<kRows, 0>(s, t, handoff, st);
      narrow_epilogue<Element, kRows, 0>(p, s, seg, g, t, st);
    } else {
      narrow_merge<kRows, 1>(s, t, handoff, st);
      narrow_epilogue<Element, kRows, 1>(p, s, seg, g, t, st);
    }
  });
}

template <class Element, int kRows>
__global__ void __launch_bounds__(NarrowConfig<kRows>::kThreads, 1)
    hopper_narrow_kernel(const __grid_constant__ DecodeParams p,
                         const __grid_constant__ CUtensorMap tmap_kv) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)  // wgmma and TMA exist on sm_90a only
  using C = NarrowConfig<kRows>;
  extern __shared__ char smem_raw[];
  const NarrowSmem<kRows> s(smem_raw);
  const int part = blockIdx.x;
  const int g = blockIdx.z;
  if (threadIdx.x == 0) {
    for (int i = 0; i < C::kSlots; ++i) {
      ptx::mbarrier_init(&s.full[i], 1);
      ptx::mbarrier_init(&s.empty[i], C::kWarpgroupThreads);
    }
    ptx::mbarrier_init(s.to0, C::kWarpgroupThreads);
    ptx::mbarrier_init(s.to1, C::kWarpgroupThreads);
    ptx::fence_mbarrier_init();
    ptx::prefetch_tensor_map(&tmap_kv);
  }
  __syncthreads();
  // A programmatic dependent launch: no global read before this (docs/design.md, "A decode call").
  ptx::griddep_wait();
  const int warpgroup = threadIdx.x / C::kWarpgroupThreads;
  if (warpgroup == C::kConsumers) {
    ptx::setmaxnreg_dec<C::kProducerRegs>();
    if (threadIdx.x == C::kConsumers * C::kWarpgroupThreads) {
      narrow_produce<kRows>(p, &tmap_kv, s, part, g);
    }
  } else {
    ptx::setmaxnreg_inc<C::kConsumerRegs>();
    narrow_consume<Element, kRows>(p, s, part, g, warpgroup, threadIdx.x % C::kWarpgroupThreads);
  }
#endif
}

}  // namespace flash_mla::sm90
