// The wide Hopper kernel's consumer maths: the wgmma batches of Q·Kᵀ and P·V, and the
// page softmax with its running reference (decode_kernel.cuh).
#pragma once

#include <cmath>
#include <cstdint>

#include "kernels/common/softmax_ref.h"
#include "kernels/common/segments.h"
#include "kernels/params.h"
#include "kernels/sm90/decode_smem.cuh"
#include "kernels/sm90/ptx_sm90.h"

namespace flash_mla::sm90 {

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
// the rescale exp2(m_old - m_new) of the state. One consumer's softmax is on the pair's
// critical path (docs/perf-notes.md, v8): a page that no row masks takes the kMasked = false
// form, without a compare and select per score. Column j of the page is token
// page_origin + j: on a sequence's partial last page the columns below `tile` are rows that the
// copy engine zero-filled, and are masked too.
template <class Element, bool kMasked>
__device__ __forceinline__ void page_softmax(const DecodeParams& p, const Segment& seg, int tile,
                                             int m_block, const Coord& c, float (&s)[Cfg::kSAccum],
                                             RowState& st, uint32_t (&pr)[Cfg::kPRegs],
                                             char* sP, float* row_ref, float (&rescale)[2]) {
  const int origin = kMasked ? page_origin(seg, tile) : tile;
#pragma unroll
  for (int half = 0; half < 2; ++half) {
    const int r = c.r_local + 8 * half;
    const int limit =
        kMasked ? key_limit(p, seg, query_position(p, m_block * Cfg::kBlockM + r)) : 0;
    float mx = st.m[half];
#pragma unroll
    for (int nt = 0; nt < Cfg::kBlockN / 8; ++nt) {
#pragma unroll
      for (int e = 0; e < 2; ++e) {
        const int idx = nt * 4 + 2 * half + e;
        if constexpr (kMasked) {
          const int token = origin + nt * 8 + 2 * (c.lane % 4) + e;
          s[idx] = token >= tile && token < limit ? s[idx] * p.scale_log2 : -INFINITY;
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
  return key_limit(p, seg, query_position(p, m_block * Cfg::kBlockM));
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

}  // namespace flash_mla::sm90
