// decode() against the float64 reference on seeded random shapes: the combinations that the
// hand-made grid (test_decode.cpp) does not list. Each case draws its dtype, batch, lengths,
// heads, KV heads, query length, causality, scale, strides, kernel and part count from one
// seed, so a failure is reproduced by its index and the printed shape.
//
// Per case, beyond the grid's checks (finite outputs, untouched padding, empty rows exact, the
// error bounds of expect_within_error_bounds):
//   - the workspace is filled with NaN before the first call and with zeros before the second,
//     and the two calls must agree bit for bit (SPEC §3: determinism, and no result may depend
//     on what the caller's scratch memory held).
//
// FLASH_MLA_FUZZ_SEED (default 20261122, what CI and scripts/gpu_check.sh run) picks another
// set of kCases shapes.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <iterator>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "gpu/gpu_test_utils.h"

namespace flash_mla::test {
namespace {

constexpr uint64_t kDefaultSeed = 20261122;
constexpr int kCases = 64;
// Bounds that keep a case's host work (inputs, float64 reference) under half a second.
constexpr int kMaxTokensTimesHeadsKv = 50000;  // KV cache tokens × KV heads
constexpr int kSampledRows = 300;              // reference rows compared per case

uint64_t env_u64(const char* name, uint64_t fallback) {
  const char* v = std::getenv(name);
  return v != nullptr && *v != '\0' ? std::strtoull(v, nullptr, 10) : fallback;
}

struct FuzzCase {
  DecodeShape shape;
  int num_sm_parts = 0;  // 0: get_num_sm_parts
};

// Lengths from one of several families: uniform, near page edges, mostly empty, one long among
// short ones, all equal.
std::vector<int32_t> draw_lengths(std::mt19937_64& rng, int batch, int max_len) {
  auto uniform = [&](int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng); };
  std::vector<int32_t> lens(batch);
  switch (uniform(0, 4)) {
    case 0:
      for (int32_t& l : lens) l = uniform(0, max_len);
      break;
    case 1:  // a whole number of pages, give or take a token or two
      for (int32_t& l : lens) {
        l = std::max(0, kPageBlockSize * uniform(0, max_len / kPageBlockSize) + uniform(-2, 2));
      }
      break;
    case 2:  // mostly empty or tiny
      for (int32_t& l : lens) l = uniform(0, 3) == 0 ? uniform(1, 130) : 0;
      break;
    case 3:  // one long sequence among short ones
      for (int32_t& l : lens) l = uniform(0, 200);
      lens[uniform(0, batch - 1)] = uniform(max_len / 2, max_len);
      break;
    default: {
      const int l = uniform(1, max_len);
      std::fill(lens.begin(), lens.end(), l);
    }
  }
  return lens;
}

FuzzCase draw_case(uint64_t seed, int index) {
  // One generator per case (the 64-bit golden-ratio multiplier spreads neighbouring seeds), so
  // a case does not depend on the cases before it.
  std::mt19937_64 rng(seed * 0x9E3779B97F4A7C15ull + static_cast<uint64_t>(index));
  auto uniform = [&](int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng); };
  auto pick = [&](const auto& choices) { return choices[uniform(0, std::size(choices) - 1)]; };
  FuzzCase c;
  DecodeShape& s = c.shape;
  s.dtype = uniform(0, 1) == 0 ? DType::kBF16 : DType::kFP16;
  constexpr int kKvHeads[] = {1, 1, 1, 2, 3, 4};  // mostly one KV head, as in MLA
  s.num_heads_kv = pick(kKvHeads);
  // Query heads per KV head: the sizes the kernels tile by (16, 64) and those around them.
  constexpr int kPerKv[] = {1, 2, 5, 8, 15, 16, 17, 24, 32, 40, 63, 64, 65, 100, 128};
  const int per_kv = pick(kPerKv);
  s.num_heads_q = per_kv * s.num_heads_kv;
  s.seqlen_q = uniform(0, 2) == 0 ? uniform(2, 8) : 1;
  while (s.seqlen_q > 1 && s.seqlen_q * per_kv > 320) --s.seqlen_q;  // at most 5 m-blocks
  s.causal = uniform(0, 1) == 1;
  if (uniform(0, 5) == 0) s.softmax_scale = 0.02f + 0.3f * uniform(0, 100) / 100.0f;
  s.padded_strides = uniform(0, 3) == 0;
  s.kernel = uniform(0, 4) == 0 ? KernelChoice::kPortable : KernelChoice::kAuto;

  const int batch = uniform(0, 3) == 0 ? uniform(1, 4) : uniform(5, 96);
  // Long contexts in a third of the cases, bounded so that about half the batch at max_len
  // stays within the host budget.
  const int family_max = uniform(1, 3) == 1 ? 20000 : 3000;
  const int budget_max = kMaxTokensTimesHeadsKv / s.num_heads_kv / std::max(1, batch / 2);
  s.seqlens = draw_lengths(rng, batch, std::max(1, std::min(family_max, budget_max)));
  // Keep the host work bounded whatever the family drew.
  int64_t total = 0;
  for (int32_t l : s.seqlens) total += l;
  while (total * s.num_heads_kv > kMaxTokensTimesHeadsKv) {
    total = 0;
    for (int32_t& l : s.seqlens) total += (l /= 2);
  }
  if (uniform(0, 4) == 0) c.num_sm_parts = uniform(1, 300);
  return c;
}

std::string describe_case(const FuzzCase& c) {
  const DecodeShape& s = c.shape;
  std::ostringstream os;
  os << (s.dtype == DType::kBF16 ? "bf16" : "fp16") << " b=" << s.seqlens.size()
     << " h_q=" << s.num_heads_q << " h_kv=" << s.num_heads_kv << " s_q=" << s.seqlen_q
     << " causal=" << s.causal << " strides=" << (s.padded_strides ? "padded" : "dense")
     << " kernel=" << (s.kernel == KernelChoice::kPortable ? "portable" : "auto")
     << " parts=" << c.num_sm_parts;
  if (s.softmax_scale) os << " scale=" << *s.softmax_scale;
  os << " L=[";
  for (size_t k = 0; k < s.seqlens.size(); ++k) os << (k ? "," : "") << s.seqlens[k];
  os << "]";
  return os.str();
}

class DecodeFuzz : public ::testing::TestWithParam<int> {};

TEST_P(DecodeFuzz, MatchesFloat64ReferenceAndRepeats) {
  FLASH_MLA_SKIP_WITHOUT_GPU();
  const int index = GetParam();
  const uint64_t seed = env_u64("FLASH_MLA_FUZZ_SEED", kDefaultSeed);
  const FuzzCase c = draw_case(seed, index);
  const std::string what = describe_case(c);
  SCOPED_TRACE("seed " + std::to_string(seed) + ", case " + std::to_string(index) + ": " + what);
  std::printf("[ shape    ] %d: %s\n", index, what.c_str());

  const HostInputs in = make_random_inputs(c.shape, seed + static_cast<uint64_t>(index));
  DeviceDecode d;
  prepare_decode(in, c.num_sm_parts, nullptr, &d);
  if (HasFatalFailure()) return;

  // Two calls, the workspace NaN before the first and zero before the second.
  DecodeResult runs[2];
  const int workspace_fill[2] = {kNanByte, 0};
  for (int k = 0; k < 2; ++k) {
    FLASH_MLA_CUDA_ASSERT(cudaMemset(d.out.get(), kNanByte, d.out.bytes()));
    FLASH_MLA_CUDA_ASSERT(cudaMemset(d.lse.get(), kNanByte, d.lse.bytes()));
    if (d.workspace.bytes() > 0) {
      FLASH_MLA_CUDA_ASSERT(cudaMemset(d.workspace.get(), workspace_fill[k], d.workspace.bytes()));
    }
    FLASH_MLA_ASSERT_OK(decode(d.problem, d.args, nullptr));
    FLASH_MLA_CUDA_ASSERT(cudaDeviceSynchronize());
    FLASH_MLA_CUDA_ASSERT(cudaGetLastError());
    download_outputs(d, &runs[k]);
    if (HasFatalFailure()) return;
  }
  EXPECT_EQ(std::memcmp(runs[0].out.data(), runs[1].out.data(),
                        runs[0].out.size() * sizeof(uint16_t)), 0)
      << "out differs between the two calls";
  EXPECT_EQ(std::memcmp(runs[0].lse.data(), runs[1].lse.data(),
                        runs[0].lse.size() * sizeof(float)), 0)
      << "lse differs between the two calls";

  // Rows sampled from their own stream (not the inputs' seed).
  const ErrorStats stats = compare_with_reference(in, runs[0], kSampledRows, seed ^ 0x51ull);
  std::printf("[ errors   ] %d: %s\n", index, describe(stats).c_str());
  if (stats.rows_compared == stats.empty_rows) return;  // only the exact checks apply
  expect_within_error_bounds(c.shape.dtype, stats);
}

INSTANTIATE_TEST_SUITE_P(Seeded, DecodeFuzz, ::testing::Range(0, kCases));

}  // namespace
}  // namespace flash_mla::test
