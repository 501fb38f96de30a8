// CPU reference of SPEC §1 in float64, and exact host bf16/fp16 conversions.
#include "reference/reference.h"

#include <flash_mla/flash_mla.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

namespace flash_mla::ref {
namespace {

uint32_t float_bits(float x) {
  uint32_t bits;
  std::memcpy(&bits, &x, sizeof bits);
  return bits;
}

float bits_float(uint32_t bits) {
  float x;
  std::memcpy(&x, &bits, sizeof x);
  return x;
}

// value >> shift rounded to nearest, ties to even (0 < shift < 32).
uint32_t shift_right_rne(uint32_t value, int shift) {
  const uint32_t kept = value >> shift;
  const uint32_t rest = value & ((1u << shift) - 1u);
  const uint32_t half = 1u << (shift - 1);
  return (rest > half || (rest == half && (kept & 1u))) ? kept + 1u : kept;
}

// Keys j < num_valid_keys are valid for query token i (SPEC §1); may be <= 0.
int num_valid_keys(const RefProblem& p, int seqlen, int i) {
  if (!p.causal) return seqlen;
  return std::min(seqlen, seqlen - p.seqlen_q + i + 1);
}

// K row of token j, KV head g of sequence b. Dereferences block_table only for the page of j,
// so the caller must keep j < cache_seqlens[b].
const float* key_row(const RefProblem& p, const float* k_cache, const int32_t* block_table,
                     int b, int j, int g) {
  const int32_t page =
      block_table[static_cast<size_t>(b) * p.max_blocks_per_seq + j / p.page_block_size];
  const size_t token = static_cast<size_t>(page) * p.page_block_size + j % p.page_block_size;
  return k_cache + (token * p.num_heads_kv + g) * kHeadDim;
}

}  // namespace

uint16_t float_to_bf16(float x) {
  const uint32_t bits = float_bits(x);
  if (std::isnan(x)) return static_cast<uint16_t>((bits >> 16) | 0x0040u);  // keep it quiet NaN
  // bf16 is the top half of fp32; rounding may carry into the exponent (up to inf), as it should.
  return static_cast<uint16_t>((bits + 0x7FFFu + ((bits >> 16) & 1u)) >> 16);
}

float bf16_to_float(uint16_t bits) { return bits_float(static_cast<uint32_t>(bits) << 16); }

uint16_t float_to_fp16(float x) {
  const uint32_t bits = float_bits(x);
  const uint16_t sign = static_cast<uint16_t>((bits >> 16) & 0x8000u);
  const uint32_t magnitude = bits & 0x7FFFFFFFu;
  constexpr uint32_t kInf32 = 0x7F800000u;
  constexpr uint32_t kOverflow = 0x477FF000u;     // 65520 = halfway 65504..65536: ties to inf
  constexpr uint32_t kMinNormal = 0x38800000u;    // 2^-14
  constexpr uint32_t kExponentRebias = (127u - 15u) << 23;

  if (magnitude > kInf32) return sign | 0x7E00u;  // NaN
  if (magnitude >= kOverflow) return sign | 0x7C00u;
  if (magnitude >= kMinNormal) {
    return sign | static_cast<uint16_t>(shift_right_rne(magnitude - kExponentRebias, 13));
  }
  // Subnormal result: round(|x| * 2^24). |x| = m * 2^(e - 150) with the implicit bit in m.
  const int exponent = static_cast<int>(magnitude >> 23);
  const int shift = 126 - exponent;
  if (shift > 24) return sign;  // below 2^-25: rounds to zero
  const uint32_t mantissa = (magnitude & 0x7FFFFFu) | 0x800000u;
  return sign | static_cast<uint16_t>(shift_right_rne(mantissa, shift));
}

float fp16_to_float(uint16_t bits) {
  const uint32_t sign = static_cast<uint32_t>(bits & 0x8000u) << 16;
  const uint32_t exponent = (bits >> 10) & 0x1Fu;
  const uint32_t mantissa = bits & 0x3FFu;
  if (exponent == 0) {  // zero or subnormal: mantissa * 2^-24, exact in fp32
    const float magnitude = std::ldexp(static_cast<float>(mantissa), -24);
    return sign ? -magnitude : magnitude;
  }
  if (exponent == 0x1F) return bits_float(sign | 0x7F800000u | (mantissa << 13));
  return bits_float(sign | ((exponent - 15u + 127u) << 23) | (mantissa << 13));
}

void reference_row(const RefProblem& p, const float* q, const float* k_cache,
                   const int32_t* block_table, const int32_t* cache_seqlens, int b, int i, int h,
                   double* out512, double* lse) {
  std::fill(out512, out512 + kHeadDimV, 0.0);
  const int num_keys = num_valid_keys(p, cache_seqlens[b], i);
  if (num_keys <= 0) {
    *lse = std::numeric_limits<double>::infinity();
    return;
  }
  const int g = h / (p.num_heads_q / p.num_heads_kv);
  const float* q_row =
      q + ((static_cast<size_t>(b) * p.seqlen_q + i) * p.num_heads_q + h) * kHeadDim;

  std::vector<const float*> k_rows(num_keys);
  std::vector<double> scores(num_keys);
  double max_score = -std::numeric_limits<double>::infinity();
  for (int j = 0; j < num_keys; ++j) {
    k_rows[j] = key_row(p, k_cache, block_table, b, j, g);
    double dot = 0.0;
    for (int d = 0; d < kHeadDim; ++d) dot += static_cast<double>(q_row[d]) * k_rows[j][d];
    scores[j] = p.softmax_scale * dot;
    max_score = std::max(max_score, scores[j]);
  }
  double sum = 0.0;
  for (double& s : scores) {
    s = std::exp(s - max_score);
    sum += s;
  }
  for (int j = 0; j < num_keys; ++j) {
    const double weight = scores[j] / sum;
    for (int d = 0; d < kHeadDimV; ++d) out512[d] += weight * k_rows[j][d];
  }
  *lse = max_score + std::log(sum);
}

void reference_all(const RefProblem& p, const float* q, const float* k_cache,
                   const int32_t* block_table, const int32_t* cache_seqlens,
                   std::vector<double>& out, std::vector<double>& lse) {
  const size_t rows = static_cast<size_t>(p.batch) * p.seqlen_q * p.num_heads_q;
  out.assign(rows * kHeadDimV, 0.0);
  lse.assign(rows, 0.0);
  for (int b = 0; b < p.batch; ++b) {
    for (int i = 0; i < p.seqlen_q; ++i) {
      for (int h = 0; h < p.num_heads_q; ++h) {
        const size_t out_row = (static_cast<size_t>(b) * p.seqlen_q + i) * p.num_heads_q + h;
        const size_t lse_index = (static_cast<size_t>(b) * p.num_heads_q + h) * p.seqlen_q + i;
        reference_row(p, q, k_cache, block_table, cache_seqlens, b, i, h,
                      out.data() + out_row * kHeadDimV, &lse[lse_index]);
      }
    }
  }
}

}  // namespace flash_mla::ref
