// The last step of a query row's online softmax, shared by every decode kernel's epilogue.
#pragma once

#include <cmath>

namespace flash_mla {

struct FinishedRow {
  float inv_sum;  // 1 / l, or 0 for a row that saw no key (its output is then 0)
  float lse;      // natural-log LSE
};

// m_log2: the row's softmax reference in the base-2 domain (scale * log2 e applied): its
// running maximum, or in the Hopper kernels a point at most 2^8 below it (softmax_ref.h);
// l: the sum of exp2(s - m_log2) over the keys it saw. A row that saw no key gets
// lse = +inf when it is the final output (SPEC: an empty row), -inf as a split piece's partial,
// so the combine kernel gives it no weight.
__device__ __forceinline__ FinishedRow finish_row(float m_log2, float l, bool split) {
  constexpr float kLn2 = 0.69314718055994531f;
  const bool empty = l == 0.f;
  return {empty ? 0.f : 1.f / l, empty ? (split ? -INFINITY : INFINITY) : (m_log2 + log2f(l)) * kLn2};
}

}  // namespace flash_mla
