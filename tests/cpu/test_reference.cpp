// Hand-checkable cases of the CPU reference (SPEC §1) and of the 16-bit conversions.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include <flash_mla/flash_mla.h>
#include "reference/reference.h"

namespace flash_mla::ref {
namespace {

constexpr int kD = kHeadDim;
constexpr int kDv = kHeadDimV;
constexpr double kInf = std::numeric_limits<double>::infinity();

// A small dense problem whose values the tests set by hand. Pages are identity-mapped unless
// a test rewrites block_table.
struct TinyCase {
  RefProblem p;
  int num_blocks = 0;
  std::vector<float> q, k;
  std::vector<int32_t> block_table, seqlens;

  TinyCase(int batch, int s_q, int h_q, int h_kv, int max_blocks, int num_blocks_, bool causal) {
    p.batch = batch;
    p.seqlen_q = s_q;
    p.num_heads_q = h_q;
    p.num_heads_kv = h_kv;
    p.max_blocks_per_seq = max_blocks;
    p.causal = causal;
    p.softmax_scale = 1.0;
    num_blocks = num_blocks_;
    q.assign(static_cast<size_t>(batch) * s_q * h_q * kD, 0.0f);
    k.assign(static_cast<size_t>(num_blocks) * p.page_block_size * h_kv * kD, 0.0f);
    block_table.resize(static_cast<size_t>(batch) * max_blocks);
    for (size_t t = 0; t < block_table.size(); ++t) block_table[t] = static_cast<int32_t>(t);
    seqlens.assign(batch, 0);
  }
  float* q_row(int b, int i, int h) {
    return &q[((static_cast<size_t>(b) * p.seqlen_q + i) * p.num_heads_q + h) * kD];
  }
  // Row of physical page `page`, slot `t`, KV head g (ignores block_table).
  float* k_row(int page, int t, int g) {
    return &k[((static_cast<size_t>(page) * p.page_block_size + t) * p.num_heads_kv + g) * kD];
  }
  void run_row(int b, int i, int h, std::vector<double>& out, double& lse) const {
    out.assign(kDv, -1.0);
    reference_row(p, q.data(), k.data(), block_table.data(), seqlens.data(), b, i, h, out.data(),
                  &lse);
  }
};

// Distinct, exactly representable V values: row r gets r + d / 1024.
void fill_value_row(float* row, int r) {
  for (int d = 0; d < kD; ++d) row[d] = static_cast<float>(r) + static_cast<float>(d) / 1024.0f;
}

TEST(Reference, OneKeyGivesItsValueRowAndScaledDot) {
  TinyCase c(1, 1, 1, 1, 1, 1, false);
  c.p.softmax_scale = 0.25;
  c.seqlens[0] = 1;
  fill_value_row(c.k_row(0, 0, 0), 3);
  c.q_row(0, 0, 0)[0] = 1.0f;    // dot = 1 * k[0] + 2 * k[575]
  c.q_row(0, 0, 0)[575] = 2.0f;
  const double dot = 3.0 + 2.0 * (3.0 + 575.0 / 1024.0);
  std::vector<double> out;
  double lse = 0.0;
  c.run_row(0, 0, 0, out, lse);
  EXPECT_NEAR(lse, 0.25 * dot, 1e-12);
  for (int d = 0; d < kDv; ++d) ASSERT_NEAR(out[d], c.k_row(0, 0, 0)[d], 1e-12) << "d=" << d;
}

TEST(Reference, TwoEqualScoresAverageAndAddLn2) {
  TinyCase c(1, 1, 1, 1, 1, 1, false);
  c.seqlens[0] = 2;
  fill_value_row(c.k_row(0, 0, 0), 1);
  fill_value_row(c.k_row(0, 1, 0), 5);
  // Equal scores: q only reads channel 575, set equal in both keys.
  c.k_row(0, 0, 0)[575] = c.k_row(0, 1, 0)[575] = 0.5f;
  c.q_row(0, 0, 0)[575] = 3.0f;
  std::vector<double> out;
  double lse = 0.0;
  c.run_row(0, 0, 0, out, lse);
  EXPECT_NEAR(lse, 1.5 + std::log(2.0), 1e-12);
  for (int d = 0; d < kDv; ++d) {
    ASSERT_NEAR(out[d], 0.5 * (c.k_row(0, 0, 0)[d] + c.k_row(0, 1, 0)[d]), 1e-12) << "d=" << d;
  }
}

TEST(Reference, CausalFirstTokenDoesNotSeeLastKey) {
  // s_q = 2, L = 3: token 0 sees keys {0, 1}, token 1 sees {0, 1, 2}. q = 0 -> uniform weights.
  TinyCase c(1, 2, 1, 1, 1, 1, true);
  c.seqlens[0] = 3;
  for (int j = 0; j < 3; ++j) fill_value_row(c.k_row(0, j, 0), 10 * (j + 1));
  std::vector<double> out_all, lse_all;
  reference_all(c.p, c.q.data(), c.k.data(), c.block_table.data(), c.seqlens.data(), out_all,
                lse_all);
  ASSERT_EQ(lse_all.size(), 2u);  // [b=1, h_q=1, s_q=2]
  EXPECT_NEAR(lse_all[0], std::log(2.0), 1e-12);
  EXPECT_NEAR(lse_all[1], std::log(3.0), 1e-12);
  for (int d = 0; d < kDv; ++d) {
    const double v0 = c.k_row(0, 0, 0)[d], v1 = c.k_row(0, 1, 0)[d], v2 = c.k_row(0, 2, 0)[d];
    ASSERT_NEAR(out_all[d], (v0 + v1) / 2.0, 1e-12) << "token 0, d=" << d;
    ASSERT_NEAR(out_all[kDv + d], (v0 + v1 + v2) / 3.0, 1e-12) << "token 1, d=" << d;
  }

  c.p.causal = false;  // without the mask token 0 sees all three
  std::vector<double> out;
  double lse = 0.0;
  c.run_row(0, 0, 0, out, lse);
  EXPECT_NEAR(lse, std::log(3.0), 1e-12);
}

TEST(Reference, EmptySequenceGivesZeroAndInfiniteLse) {
  TinyCase c(2, 1, 1, 1, 1, 2, false);
  c.seqlens = {0, 1};
  c.block_table = {-1, 1};  // sequence 0's entry is garbage and must not be read
  std::vector<double> out;
  double lse = 0.0;
  c.run_row(0, 0, 0, out, lse);
  EXPECT_EQ(lse, kInf);
  for (double v : out) ASSERT_EQ(v, 0.0);
}

TEST(Reference, CausalRowWithNoVisibleKeyIsEmpty) {
  // s_q = 3, L = 1: tokens 0 and 1 see nothing (L < s_q - i), token 2 sees key 0.
  TinyCase c(1, 3, 1, 1, 1, 1, true);
  c.seqlens[0] = 1;
  fill_value_row(c.k_row(0, 0, 0), 7);
  std::vector<double> out;
  double lse = 0.0;
  for (int i = 0; i < 2; ++i) {
    c.run_row(0, i, 0, out, lse);
    EXPECT_EQ(lse, kInf) << "token " << i;
    for (double v : out) ASSERT_EQ(v, 0.0) << "token " << i;
  }
  c.run_row(0, 2, 0, out, lse);
  EXPECT_NEAR(lse, 0.0, 1e-12);
  for (int d = 0; d < kDv; ++d) ASSERT_NEAR(out[d], c.k_row(0, 0, 0)[d], 1e-12);
}

TEST(Reference, QueryHeadsMapToKvHeadsInGroups) {
  // h_q = 4, h_kv = 2: heads {0, 1} read KV head 0, heads {2, 3} read KV head 1.
  TinyCase c(1, 1, 4, 2, 1, 1, false);
  c.seqlens[0] = 1;
  fill_value_row(c.k_row(0, 0, 0), 100);
  fill_value_row(c.k_row(0, 0, 1), 200);
  for (int h = 0; h < 4; ++h) {
    std::vector<double> out;
    double lse = 0.0;
    c.run_row(0, 0, h, out, lse);
    const int g = h / 2;
    EXPECT_NEAR(out[0], c.k_row(0, 0, g)[0], 1e-12) << "head " << h;
    EXPECT_NEAR(out[511], c.k_row(0, 0, g)[511], 1e-12) << "head " << h;
  }
}

TEST(Reference, PaddingNanAndGarbageBlockTableAreIgnored) {
  // L = 70 over two pages mapped to physical pages {3, 1}; pages 0, 2, 4 unused.
  const int kBlocks = 5, kMaxBlocks = 4, kLen = 70;
  TinyCase clean(1, 1, 2, 1, kMaxBlocks, kBlocks, false);
  clean.p.softmax_scale = 1.0 / 24.0;
  clean.seqlens[0] = kLen;
  clean.block_table = {3, 1, 0, 2};
  for (int j = 0; j < kLen; ++j) {
    const int page = clean.block_table[j / 64];
    fill_value_row(clean.k_row(page, j % 64, 0), j % 9);
    clean.k_row(page, j % 64, 0)[575] = static_cast<float>(j % 5) / 4.0f;
  }
  for (int h = 0; h < 2; ++h) clean.q_row(0, 0, h)[575] = 1.0f + h;

  TinyCase poisoned = clean;
  const float nan = std::numeric_limits<float>::quiet_NaN();
  poisoned.block_table = {3, 1, -1, 1 << 30};
  for (int page : {0, 2, 4}) {
    for (int t = 0; t < 64; ++t) std::fill_n(poisoned.k_row(page, t, 0), kD, nan);
  }
  for (int t = kLen - 64; t < 64; ++t) std::fill_n(poisoned.k_row(1, t, 0), kD, nan);

  for (int h = 0; h < 2; ++h) {
    std::vector<double> out_clean, out_poisoned;
    double lse_clean = 0.0, lse_poisoned = 0.0;
    clean.run_row(0, 0, h, out_clean, lse_clean);
    poisoned.run_row(0, 0, h, out_poisoned, lse_poisoned);
    ASSERT_TRUE(std::isfinite(lse_poisoned));
    EXPECT_EQ(lse_clean, lse_poisoned);
    for (int d = 0; d < kDv; ++d) {
      ASSERT_TRUE(std::isfinite(out_poisoned[d])) << "d=" << d;
      ASSERT_EQ(out_clean[d], out_poisoned[d]) << "d=" << d;
    }
  }
}

TEST(Conversions, Bf16RoundsToNearestEven) {
  EXPECT_EQ(float_to_bf16(1.0f), 0x3F80);
  EXPECT_EQ(float_to_bf16(1.0f + std::ldexp(1.0f, -8)), 0x3F80);      // tie -> even (down)
  EXPECT_EQ(float_to_bf16(1.0f + 3 * std::ldexp(1.0f, -8)), 0x3F82);  // tie -> even (up)
  EXPECT_EQ(float_to_bf16(1.0f + 5 * std::ldexp(1.0f, -9)), 0x3F81);  // above half -> up
  EXPECT_EQ(float_to_bf16(-2.0f), 0xC000);
  EXPECT_EQ(float_to_bf16(std::numeric_limits<float>::infinity()), 0x7F80);
  EXPECT_EQ(float_to_bf16(std::numeric_limits<float>::max()), 0x7F80);  // rounds up to inf
  EXPECT_TRUE(std::isnan(bf16_to_float(float_to_bf16(std::nanf("")))));
  EXPECT_TRUE(std::isnan(bf16_to_float(0x7F81)));  // signalling-NaN pattern stays NaN
}

TEST(Conversions, Fp16RoundsToNearestEvenIncludingSubnormals) {
  EXPECT_EQ(float_to_fp16(1.0f), 0x3C00);
  EXPECT_EQ(float_to_fp16(1.0f + std::ldexp(1.0f, -11)), 0x3C00);      // tie -> even (down)
  EXPECT_EQ(float_to_fp16(1.0f + 3 * std::ldexp(1.0f, -11)), 0x3C02);  // tie -> even (up)
  EXPECT_EQ(float_to_fp16(65504.0f), 0x7BFF);
  EXPECT_EQ(float_to_fp16(65519.0f), 0x7BFF);
  EXPECT_EQ(float_to_fp16(65520.0f), 0x7C00);  // tie between 65504 and 2^16 -> inf
  EXPECT_EQ(float_to_fp16(-std::numeric_limits<float>::infinity()), 0xFC00);
  EXPECT_EQ(float_to_fp16(std::ldexp(1.0f, -14)), 0x0400);             // smallest normal
  EXPECT_EQ(float_to_fp16(std::ldexp(1.0f, -24)), 0x0001);             // smallest subnormal
  EXPECT_EQ(float_to_fp16(std::ldexp(1.0f, -25)), 0x0000);             // tie -> even (zero)
  EXPECT_EQ(float_to_fp16(3 * std::ldexp(1.0f, -25)), 0x0002);         // tie -> even (2)
  EXPECT_EQ(float_to_fp16(std::ldexp(1023.5f, -24)), 0x0400);          // carries into normal
  EXPECT_EQ(float_to_fp16(-std::ldexp(1.0f, -30)), 0x8000);            // underflow keeps sign
  EXPECT_FLOAT_EQ(fp16_to_float(0x0001), std::ldexp(1.0f, -24));
  EXPECT_FLOAT_EQ(fp16_to_float(0x3555), 0.333251953125f);
  EXPECT_TRUE(std::isnan(fp16_to_float(float_to_fp16(std::nanf("")))));
  EXPECT_TRUE(std::isnan(fp16_to_float(0x7C01)));
}

TEST(Conversions, EveryNonNanPatternRoundTrips) {
  for (uint32_t bits = 0; bits <= 0xFFFF; ++bits) {
    const auto h = static_cast<uint16_t>(bits);
    const float as_bf16 = bf16_to_float(h), as_fp16 = fp16_to_float(h);
    if (!std::isnan(as_bf16)) {
      ASSERT_EQ(float_to_bf16(as_bf16), h) << std::hex << bits;
    }
    if (!std::isnan(as_fp16)) {
      ASSERT_EQ(float_to_fp16(as_fp16), h) << std::hex << bits;
    }
  }
}

}  // namespace
}  // namespace flash_mla::ref
