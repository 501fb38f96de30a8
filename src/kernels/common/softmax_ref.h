// The reference point m of a query row's online softmax in the Hopper kernels: P = exp2(s - m),
// with O and the row sum l kept in m's frame. LSE = (m + log2 l) ln 2 holds for any such m, so
// m need not be the running maximum itself.
#pragma once

#include <cmath>

#include "kernels/common/ptx.h"

namespace flash_mla {

// exp2 reference point: a row with no key yet keeps P = 0 and a zero rescale, never NaN.
__device__ __forceinline__ float softmax_ref(float m) { return m == -INFINITY ? 0.f : m; }

// The reference m of a row (P = exp2(s - m), O and l in m's frame) moves only when a page's
// maximum passes it by more than this many powers of two, so most pages rescale nothing:
// P <= 2^kRescaleSlack and l, O stay far from the fp32 range (docs/design.md, "The wide kernel").
constexpr float kRescaleSlack = 8.f;

// The reference after a page whose row maximum (with the old reference) is `mx`.
__device__ __forceinline__ float next_reference(float m_old, float mx) {
  return mx > m_old + kRescaleSlack ? mx : m_old;
}

// exp2(m_old - m_new), exactly 1 where the reference did not move.
__device__ __forceinline__ float rescale_factor(float m_old, float m_new) {
  return m_new == m_old ? 1.f : ptx::exp2_approx(m_old - softmax_ref(m_new));
}

}  // namespace flash_mla
