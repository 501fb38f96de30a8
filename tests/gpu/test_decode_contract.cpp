// SPEC §3 promises beyond accuracy: bitwise run-to-run determinism, nothing launched for a
// rejected call, and host pointers named as such when pointers are checked.
#include <gtest/gtest.h>

#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "gpu/gpu_test_utils.h"

namespace flash_mla::test {
namespace {

// Splits across parts (b = 3, L = 9000), and mixed lengths with empty and one-page sequences.
DecodeShape split_heavy_shape(DType dtype) {
  DecodeShape shape;
  shape.dtype = dtype;
  shape.seqlens = {9000, 9000, 9000};
  shape.num_heads_q = 16;
  return shape;
}

DecodeShape mixed_shape(DType dtype) {
  DecodeShape shape;
  shape.dtype = dtype;
  shape.seqlens = {9000, 17, 0, 3000, 64, 20000};
  shape.num_heads_q = 64;
  shape.seqlen_q = 2;
  shape.causal = true;
  return shape;
}

TEST(DecodeContract, RunToRunBitwiseIdentical) {
  FLASH_MLA_SKIP_WITHOUT_GPU();
  for (DType dtype : {DType::kBF16, DType::kFP16}) {
    for (const DecodeShape& shape : {split_heavy_shape(dtype), mixed_shape(dtype)}) {
      SCOPED_TRACE(std::string(dtype == DType::kBF16 ? "bf16" : "fp16") + ", batch " +
                   std::to_string(shape.seqlens.size()));
      const HostInputs in = make_random_inputs(shape, 77);
      // Same inputs, schedule and workspace; only the outputs are re-poisoned in between.
      DeviceDecode d;
      prepare_decode(in, 0, nullptr, &d);
      if (HasFatalFailure()) return;
      DecodeResult runs[2];
      for (DecodeResult& run : runs) {
        FLASH_MLA_CUDA_ASSERT(cudaMemset(d.out.get(), kNanByte, d.out.bytes()));
        FLASH_MLA_CUDA_ASSERT(cudaMemset(d.lse.get(), kNanByte, d.lse.bytes()));
        FLASH_MLA_ASSERT_OK(decode(d.problem, d.args, nullptr));
        FLASH_MLA_CUDA_ASSERT(cudaDeviceSynchronize());
        download_outputs(d, &run);
        if (HasFatalFailure()) return;
      }
      EXPECT_EQ(std::memcmp(runs[0].out.data(), runs[1].out.data(),
                            runs[0].out.size() * sizeof(uint16_t)), 0) << "out differs";
      EXPECT_EQ(std::memcmp(runs[0].lse.data(), runs[1].lse.data(),
                            runs[0].lse.size() * sizeof(float)), 0) << "lse differs";
      // And the schedule really split something, so the combine path was exercised.
      std::vector<int32_t> num_splits(shape.seqlens.size() + 1);
      FLASH_MLA_CUDA_ASSERT(d.num_splits.download(num_splits.data(), d.num_splits.bytes()));
      EXPECT_GT(num_splits.back(), 0) << "no sequence was split";
    }
  }
}

// Many pages per CTA (b = 32, L = 6144: the KV box rings wrap many times) and repeated runs:
// a read of a shared-memory slot before its fill lands shows up here as a difference between
// runs. 16 rows take the narrow Hopper kernel, 32 and 128 the wide one. Then b = 128 with
// lengths 0 .. 8000: most sequences split, merged by a combine kernel that starts while the
// split kernel ends.
TEST(DecodeContract, RunToRunBitwiseUnderLoad) {
  FLASH_MLA_SKIP_WITHOUT_GPU();
  constexpr int kHeads[] = {16, 32, 128};
  for (int variant = 0; variant < 6; ++variant) {
    const int h_q = kHeads[variant % 3];
    const bool many = variant >= 3;
    SCOPED_TRACE("h_q " + std::to_string(h_q) + (many ? ", b = 128 mixed" : ", b = 32"));
    DecodeShape shape;
    shape.seqlens = many ? random_lengths(128, 0, 8000, 128) : std::vector<int32_t>(32, 6144);
    shape.num_heads_q = h_q;
    const HostInputs in = make_random_inputs(shape, 91);
    DeviceDecode d;
    prepare_decode(in, 0, nullptr, &d);
    if (HasFatalFailure()) return;
    DecodeResult first, again;
    constexpr int kRuns = 8;
    for (int run = 0; run < kRuns; ++run) {
      FLASH_MLA_CUDA_ASSERT(cudaMemset(d.out.get(), kNanByte, d.out.bytes()));
      FLASH_MLA_CUDA_ASSERT(cudaMemset(d.lse.get(), kNanByte, d.lse.bytes()));
      FLASH_MLA_ASSERT_OK(decode(d.problem, d.args, nullptr));
      FLASH_MLA_CUDA_ASSERT(cudaDeviceSynchronize());
      download_outputs(d, run == 0 ? &first : &again);
      if (HasFatalFailure()) return;
      if (run == 0) continue;
      ASSERT_EQ(std::memcmp(first.out.data(), again.out.data(),
                            first.out.size() * sizeof(uint16_t)), 0) << "out differs, run " << run;
      ASSERT_EQ(std::memcmp(first.lse.data(), again.lse.data(),
                            first.lse.size() * sizeof(float)), 0) << "lse differs, run " << run;
    }
  }
}

// A real call (b = 2, small) with valid device buffers; tests break one argument at a time.
class RejectedCall : public ::testing::Test {
 protected:
  void SetUp() override {
    FLASH_MLA_SKIP_WITHOUT_GPU();
    DecodeShape shape;
    shape.seqlens = {64, 200};
    in_ = make_random_inputs(shape, 5);
    prepare_decode(in_, 0, nullptr, &d_);
    if (HasFatalFailure()) return;
    FLASH_MLA_CUDA_ASSERT(cudaMemset(d_.out.get(), kSentinelByte, d_.out.bytes()));
    FLASH_MLA_CUDA_ASSERT(cudaMemset(d_.lse.get(), kSentinelByte, d_.lse.bytes()));
    FLASH_MLA_CUDA_ASSERT(cudaDeviceSynchronize());
  }

  // decode() must fail naming `field`, and after a full synchronisation out and lse must
  // still hold the sentinel: nothing was launched.
  void expect_rejected_without_launch(const DecodeProblem& problem, const DecodeArgs& args,
                                      StatusCode code, const std::string& field) {
    const Status status = decode(problem, args, nullptr);
    EXPECT_FALSE(status.ok());
    EXPECT_EQ(status.code(), code) << status.message();
    EXPECT_NE(status.message().find(field), std::string::npos) << status.message();
    FLASH_MLA_CUDA_ASSERT(cudaDeviceSynchronize());
    DecodeResult after;
    download_outputs(d_, &after);
    size_t changed = 0;
    for (uint16_t bits : after.out) changed += bits != kSentinel16;
    for (float value : after.lse) {
      uint32_t bits;
      std::memcpy(&bits, &value, sizeof bits);
      changed += bits != kSentinel32;
    }
    EXPECT_EQ(changed, 0u) << "a rejected call wrote its outputs";
  }

  static constexpr int kSentinelByte = 0xAB;
  static constexpr uint16_t kSentinel16 = 0xABAB;
  static constexpr uint32_t kSentinel32 = 0xABABABABu;
  HostInputs in_;
  DeviceDecode d_;
};

TEST_F(RejectedCall, ValidCallWritesOutputs) {
  // The control: the same setup, unbroken, does overwrite the sentinel.
  FLASH_MLA_ASSERT_OK(decode(d_.problem, d_.args, nullptr));
  FLASH_MLA_CUDA_ASSERT(cudaDeviceSynchronize());
  DecodeResult after;
  download_outputs(d_, &after);
  EXPECT_NE(after.out.front(), kSentinel16);
}

TEST_F(RejectedCall, WrongHeadDimLaunchesNothing) {
  DecodeProblem problem = d_.problem;
  problem.head_dim = 575;
  expect_rejected_without_launch(problem, d_.args, StatusCode::kInvalidArgument, "head_dim");
}

TEST_F(RejectedCall, MetadataOfAnotherBatchLaunchesNothing) {
  DecodeArgs args = d_.args;
  args.metadata_batch = d_.problem.batch + 1;
  expect_rejected_without_launch(d_.problem, args, StatusCode::kInvalidArgument,
                                 "metadata_batch");
}

TEST_F(RejectedCall, SmallWorkspaceLaunchesNothing) {
  DecodeArgs args = d_.args;
  ASSERT_GT(args.workspace_bytes, 0u);
  args.workspace_bytes -= 1;
  expect_rejected_without_launch(d_.problem, args, StatusCode::kWorkspaceTooSmall,
                                 "workspace_bytes");
}

TEST_F(RejectedCall, HostPointerIsNamedWhenPointersAreChecked) {
  ASSERT_TRUE(validate(d_.problem, d_.args, /*check_pointers=*/true).ok());
  // malloc'd (pageable, unregistered) host memory, aligned like a device allocation.
  const size_t bytes = in_.q_bits.size() * sizeof(uint16_t);
  std::unique_ptr<void, decltype(&std::free)> host_q(
      std::aligned_alloc(256, (bytes + 255) / 256 * 256), &std::free);
  ASSERT_NE(host_q.get(), nullptr);
  DecodeArgs args = d_.args;
  args.q = host_q.get();
  const Status status = validate(d_.problem, args, /*check_pointers=*/true);
  EXPECT_EQ(status.code(), StatusCode::kInvalidArgument) << status.message();
  EXPECT_EQ(status.message().rfind("q:", 0), 0u) << "message should start with \"q:\": "
                                                << status.message();
  EXPECT_NE(status.message().find("device"), std::string::npos) << status.message();
}

}  // namespace
}  // namespace flash_mla::test
