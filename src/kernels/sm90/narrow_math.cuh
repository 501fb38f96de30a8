// The narrow Hopper kernel's consumer maths: the transposed wgmmas, a consumer's running
// state, and the column softmax of a page (narrow_kernel.cuh).
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cmath>
#include <cstdint>
#include <type_traits>

#include "kernels/common/softmax_ref.h"
#include "kernels/common/segments.h"
#include "kernels/params.h"
#include "kernels/sm90/config.h"
#include "kernels/sm90/narrow_smem.cuh"
#include "kernels/sm90/ptx_sm90.h"

namespace flash_mla::sm90 {

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
  ptx::wgmma_ss_m64n16k16(d, da, db, accumulate, Element{});
}

template <class Element, int kRows>
__device__ __forceinline__ void wgmma_values(float (&d)[NarrowConfig<kRows>::kSAccum],
                                             uint64_t da, uint64_t db) {
  ptx::wgmma_ss_m64n16k16_ta(d, da, db, 1u, Element{});
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

// Column softmax of one page for consumer `consumer`, in the base-2 domain: masks S^T in place
// (row r of S^T is token origin + r; rows below `tile`, zero-filled on a partial last page, are
// masked as well as those past each column's limit),
// takes each query row's maximum over the page's 64 tokens (within a warp, then across the 4
// warps through `col_max`), moves the references, writes P^T = exp2(S^T - m) to the consumer's
// P^T buffer, updates the sums and returns each column's rescale of O^T.
template <class Element, int kRows>
__device__ __forceinline__ void narrow_softmax(
    const DecodeParams& p, const NarrowSmem<kRows>& s, int tile, int origin, int consumer, int t,
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
  const int token0 = origin + m_row;
  const bool in_page[2] = {token0 >= tile, token0 + 8 >= tile};
  float mx[kCols];
#pragma unroll
  for (int j = 0; j < kCols; ++j) {
    mx[j] = -INFINITY;
#pragma unroll
    for (int half = 0; half < 2; ++half) {
      const int idx = (j / 2) * 4 + 2 * half + (j % 2);
      const int token = token0 + 8 * half;
      sc[idx] = in_page[half] && token < limit[j] ? sc[idx] * p.scale_log2 : -INFINITY;
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


}  // namespace flash_mla::sm90
