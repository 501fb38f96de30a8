// decode() against the float64 reference over a grid of shapes (SPEC §1, §3).
//
// The error bounds against the float64 reference, and why they are what they are:
// expect_within_error_bounds (gpu_test_utils.h).
#include <gtest/gtest.h>

#include <cstdio>
#include <ostream>
#include <string>
#include <vector>

#include "gpu/gpu_test_utils.h"
#include "scheduler/chain.h"
#include "scheduler/metadata.h"

namespace flash_mla::test {
namespace {

struct DecodeCase {
  std::string name;
  DecodeShape shape;
  int num_sm_parts = 0;  // 0: what get_num_sm_parts says; any positive count is valid
  int sampled_rows = 0;  // 0: compare every row
};

// gtest prints the parameter in test listings (and ctest's test names): the case name.
void PrintTo(const DecodeCase& c, std::ostream* os) { *os << c.name; }

std::string dtype_tag(DType dtype) { return dtype == DType::kBF16 ? "bf16" : "fp16"; }

// Builds the grid; every entry exists for bf16 and fp16.
class CaseList {
 public:
  // One case per dtype, named "<tag>_<dtype>".
  void add(const std::string& tag, const std::vector<int32_t>& seqlens, int h_q, int s_q,
           int h_kv = 1, bool causal = false) {
    for (DType dtype : {DType::kBF16, DType::kFP16}) {
      DecodeCase c;
      c.name = tag + "_" + dtype_tag(dtype);
      c.shape.dtype = dtype;
      c.shape.seqlens = seqlens;
      c.shape.num_heads_q = h_q;
      c.shape.seqlen_q = s_q;
      c.shape.num_heads_kv = h_kv;
      c.shape.causal = causal;
      cases_.push_back(c);
    }
  }
  // Applies `edit` to both dtype variants of the last add().
  template <typename Edit>
  void edit_last(Edit edit) {
    for (size_t k = cases_.size() - kDtypes; k < cases_.size(); ++k) edit(cases_[k]);
  }
  const std::vector<DecodeCase>& cases() const { return cases_; }

 private:
  static constexpr size_t kDtypes = 2;
  std::vector<DecodeCase> cases_;
};

void use_portable(DecodeCase& c) {
  c.name += "_portable";
  c.shape.kernel = KernelChoice::kPortable;
}

std::vector<DecodeCase> decode_cases() {
  CaseList list;
  // One sequence around page boundaries.
  for (int len : {1, 63, 64, 65, 1000}) list.add("b1_L" + std::to_string(len), {len}, 16, 1);
  list.add("b1_L1000", {1000}, 16, 1);
  list.edit_last(use_portable);
  // Mixed lengths with an empty sequence; all empty.
  list.add("b4_mixed", {0, 1, 63, 130}, 16, 2, 1, true);
  list.add("b4_mixed", {0, 1, 63, 130}, 16, 2, 1, true);
  list.edit_last(use_portable);
  list.add("all_empty", {0, 0, 0}, 16, 1);

  // Rows per KV head M = s_q * h_q / h_kv across the tile sizes: 1 .. 256.
  struct Rows { int h_q, s_q; };
  for (Rows r : {Rows{1, 1}, Rows{8, 1}, Rows{16, 1}, Rows{17, 1}, Rows{16, 2}, Rows{33, 1},
                 Rows{64, 1}, Rows{65, 1}, Rows{128, 1}, Rows{64, 2}, Rows{128, 2}}) {
    const std::string tag = "M" + std::to_string(r.h_q * r.s_q) + "_hq" +
                            std::to_string(r.h_q) + "_sq" + std::to_string(r.s_q);
    list.add(tag, {300, 1000}, r.h_q, r.s_q, 1, r.s_q > 1);
    if (r.h_q == 17 || r.h_q == 65 || r.h_q * r.s_q == 256) {
      list.add(tag, {300, 1000}, r.h_q, r.s_q, 1, r.s_q > 1);
      list.edit_last(use_portable);
    }
  }

  // Multi-token decoding, causal and not; the L = 5 sequence has empty causal rows at s_q > 6.
  for (int s_q = 1; s_q <= 8; ++s_q) {
    for (bool causal : {true, false}) {
      list.add("sq" + std::to_string(s_q) + (causal ? "_causal" : "_full"), {5, 200, 777}, 16,
               s_q, 1, causal);
    }
  }
  // Partial last pages (1, 2 and 3 valid tokens) whose causal rows see none, or only some, of
  // the page's tokens while seeing the pages before it: the Hopper kernels load such a page
  // shifted, its rows before the page zero-filled, and mask keys on both sides (page_origin).
  // 16 rows take the narrow kernel, 64 the wide one.
  list.add("page_edge_causal_M16", {65, 130, 67}, 4, 4, 1, true);
  list.add("page_edge_causal_M64", {65, 130, 67}, 16, 4, 1, true);

  // Several KV heads.
  for (int h_kv : {2, 4}) {
    for (int s_q : {1, 2}) {
      list.add("hkv" + std::to_string(h_kv) + "_sq" + std::to_string(s_q), {100, 700},
               16 * h_kv, s_q, h_kv, s_q > 1);
    }
  }

  // Few sequences with many rows per KV head and two KV heads, one of them empty: the adaptive
  // combine kernel's work list over several KV heads.
  list.add("hkv2_M128_b4", {0, 3000, 64, 9000}, 256, 1, 2);

  // Custom scale.
  list.add("scale0p3", {500, 64}, 16, 1);
  list.edit_last([](DecodeCase& c) { c.shape.softmax_scale = 0.3f; });

  // Strided views of q, k_cache, out, lse and the block table.
  list.add("strided", {1, 200, 1500}, 32, 2, 2, true);
  list.edit_last([](DecodeCase& c) { c.shape.padded_strides = true; });
  list.add("strided", {1, 200, 1500}, 32, 2, 2, true);
  list.edit_last([](DecodeCase& c) {
    c.shape.padded_strides = true;
    use_portable(c);
  });

  // Long sequences (split across many parts), and a large batch of short ones (sampled).
  list.add("long_b2", {5000, 20000}, 16, 1);
  list.add("b1_L131072", {131072}, 16, 1);
  std::vector<int32_t> one_long = random_lengths(32, 1, 2000, 32);
  one_long[5] = 65536;
  list.add("one_long_among_short", one_long, 16, 1);
  list.add("b4096_short", random_lengths(4096, 0, 100, 4096), 16, 1);
  list.edit_last([](DecodeCase& c) { c.sampled_rows = 2000; });
  // Many sequences, most of them split, some empty: the combine kernel's column per part, which
  // the split kernels let start before they end. 16 rows take the narrow Hopper kernel, 64 the
  // wide one.
  for (int h_q : {16, 64}) {
    list.add("b64_mixed_M" + std::to_string(h_q), random_lengths(64, 0, 4000, 64), h_q, 1);
  }

  // Many sequences with several KV heads: the combine kernel's column per part over KV heads, and
  // over two m-blocks of the wide Hopper kernel at 128 rows.
  list.add("many_b48_hkv2_M64", random_lengths(48, 0, 3000, 48), 128, 1, 2);
  list.add("many_b40_hkv2_M128_sq2_causal", random_lengths(40, 0, 3000, 40), 128, 2, 2, true);

  // Explicit part counts: any positive count must give the same results. 600 parts put the
  // combine kernel for few sequences past 48 KiB of shared memory with its static arrays
  // (the launch failed before 2026-11-22); at 8000 its slot weights no longer fit at all.
  for (int parts : {1, 7, 300, 600, 8000}) {
    list.add("parts" + std::to_string(parts), {9000, 100, 2500}, 16, 2, 1, true);
    list.edit_last([parts](DecodeCase& c) { c.num_sm_parts = parts; });
  }

  // The chain schedule (scheduler/chain.h): about a sequence a part with mixed lengths at 64
  // and 128 rows, the walk taking the sequences out of batch order and most parts a piece of a
  // cut one (sampled rows). Explicit part counts keep these chain schedules on any GPU;
  // ChainCasesTakeTheChainSchedule checks that they do.
  list.add("chain_b100_M64", random_lengths(100, 0, 3000, 100), 64, 1);
  list.edit_last([](DecodeCase& c) { c.num_sm_parts = 132; c.sampled_rows = 600; });
  list.add("chain_b60_M128_sq2_causal", random_lengths(60, 0, 3000, 60), 64, 2, 1, true);
  list.edit_last([](DecodeCase& c) { c.num_sm_parts = 66; c.sampled_rows = 600; });
  list.add("chain_b20_M64_parts16", random_lengths(20, 0, 5000, 20), 64, 1);
  list.edit_last([](DecodeCase& c) { c.num_sm_parts = 16; });
  list.add("chain_b20_M64_parts16", random_lengths(20, 0, 5000, 20), 64, 1);
  list.edit_last([](DecodeCase& c) {
    c.num_sm_parts = 16;
    use_portable(c);
  });
  // More than 2 P - 1 sequences: the walk order's words fill kIdle of every record and kNumParts
  // of all but the last (45 of at most 46 positions on 12 parts; 256 rows in 4 m-blocks). A few
  // long sequences among short ones get cut.
  std::vector<int32_t> many = random_lengths(45, 0, 3000, 45);
  many[3] = 20000;
  many[30] = 9000;
  list.add("chain_b45_M64_parts12", many, 64, 1);
  list.edit_last([](DecodeCase& c) { c.num_sm_parts = 12; c.sampled_rows = 600; });
  many = random_lengths(90, 0, 2000, 90);
  many[10] = 12000;
  many[89] = 7000;
  list.add("chain_b90_M256_sq2_causal", many, 128, 2, 1, true);
  list.edit_last([](DecodeCase& c) { c.num_sm_parts = 24; c.sampled_rows = 600; });
  return list.cases();
}

// The grid's chain cases take the chain schedule (its host twin, which the device kernel
// equals: test_metadata_gpu.cpp), so they test the decode kernels' walk of it.
TEST(DecodeGrid, ChainCasesTakeTheChainSchedule) {
  int chains = 0;
  for (const DecodeCase& c : decode_cases()) {
    if (c.name.rfind("chain_", 0) != 0) continue;
    const int batch = static_cast<int>(c.shape.seqlens.size());
    const int rows = c.shape.seqlen_q * c.shape.num_heads_q / c.shape.num_heads_kv;
    std::vector<int32_t> metadata(static_cast<size_t>(c.num_sm_parts) * kMetadataFields);
    std::vector<int32_t> splits(batch + 1);
    detail::compute_metadata_host(c.shape.seqlens.data(), batch, rows, c.num_sm_parts,
                                  metadata.data(), splits.data());
    EXPECT_TRUE(sched::is_chain(metadata.data())) << c.name;
    EXPECT_GT(splits[batch], 0) << c.name << ": nothing split";
    ++chains;
  }
  EXPECT_EQ(chains, 12);
}

class DecodeVsReference : public ::testing::TestWithParam<DecodeCase> {};

TEST_P(DecodeVsReference, MatchesFloat64Reference) {
  FLASH_MLA_SKIP_WITHOUT_GPU();
  const DecodeCase& c = GetParam();
  const uint64_t seed = seed_from_name(c.name);
  const HostInputs in = make_random_inputs(c.shape, seed);

  cudaStream_t stream = nullptr;
  FLASH_MLA_CUDA_ASSERT(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  DecodeResult result;
  run_decode(in, c.num_sm_parts, stream, &result);
  cudaStreamDestroy(stream);
  if (HasFatalFailure()) return;

  const ErrorStats stats = compare_with_reference(in, result, c.sampled_rows, seed + 1);
  std::printf("[ errors   ] %s: %s\n", c.name.c_str(), describe(stats).c_str());
  const bool any_keys = stats.rows_compared > stats.empty_rows;
  if (!any_keys) return;  // all rows empty: the exact checks above are the whole test

  expect_within_error_bounds(c.shape.dtype, stats);
}

INSTANTIATE_TEST_SUITE_P(Grid, DecodeVsReference, ::testing::ValuesIn(decode_cases()),
                         [](const ::testing::TestParamInfo<DecodeCase>& info) {
                           return info.param.name;
                         });

}  // namespace
}  // namespace flash_mla::test
