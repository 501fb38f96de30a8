// flash_mla::validate rejects each class of bad input with a message naming the field
// (SPEC §3). Pointers are fake but aligned: validate(..., check_pointers=false) never reads them.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <string>

#include <flash_mla/flash_mla.h>

namespace flash_mla {
namespace {

constexpr int kBaselineSmParts = 132;

template <typename T>
T* fake_device_pointer(uintptr_t address) {
  return reinterpret_cast<T*>(address);  // 256-byte aligned, never dereferenced
}

// A valid problem and its arguments: b=4, s_q=2, h_q=32, h_kv=2, 40 pages of 64 tokens.
struct ValidCall {
  DecodeProblem problem;
  DecodeArgs args;

  ValidCall() {
    problem.dtype = DType::kBF16;
    problem.batch = 4;
    problem.seqlen_q = 2;
    problem.num_heads_q = 32;
    problem.num_heads_kv = 2;
    problem.num_blocks = 40;
    problem.max_blocks_per_seq = 10;
    problem.causal = true;

    args.q = fake_device_pointer<const void>(0x10000);
    args.k_cache = fake_device_pointer<const void>(0x20000);
    args.block_table = fake_device_pointer<const int32_t>(0x30000);
    args.cache_seqlens = fake_device_pointer<const int32_t>(0x40000);
    args.tile_scheduler_metadata = fake_device_pointer<const int32_t>(0x50000);
    args.num_splits = fake_device_pointer<const int32_t>(0x60000);
    args.out = fake_device_pointer<void>(0x70000);
    args.lse = fake_device_pointer<float>(0x80000);
    args.workspace = fake_device_pointer<void>(0x90000);
    args.num_sm_parts = kBaselineSmParts;
    args.metadata_batch = problem.batch;
    set_contiguous_strides(problem, args);
    const Status sized = get_workspace_size(problem, kBaselineSmParts, &args.workspace_bytes);
    EXPECT_TRUE(sized.ok()) << sized.message();
  }

  Status validate() const { return flash_mla::validate(problem, args, /*check_pointers=*/false); }
};

// The message format is "<field>: expected <what>, got <value>".
void expect_rejected(const ValidCall& call, StatusCode code, const std::string& field) {
  const Status status = call.validate();
  ASSERT_FALSE(status.ok()) << "accepted an input with a bad " << field;
  EXPECT_EQ(status.code(), code) << status_code_name(status.code()) << ": " << status.message();
  EXPECT_NE(status.message().find(field), std::string::npos)
      << "message does not name '" << field << "': " << status.message();
  EXPECT_NE(status.message().find("expected"), std::string::npos) << status.message();
  EXPECT_NE(status.message().find("got"), std::string::npos) << status.message();
}

void expect_invalid(const ValidCall& call, const std::string& field) {
  expect_rejected(call, StatusCode::kInvalidArgument, field);
}

TEST(Validation, BaselineIsAccepted) {
  ValidCall call;
  const Status status = call.validate();
  EXPECT_TRUE(status.ok()) << status.message();
  EXPECT_GT(call.args.workspace_bytes, 0u);
  EXPECT_TRUE(call.args.q_head_stride == kHeadDim && call.args.out_head_stride == kHeadDimV);
}

TEST(Validation, AcceptsZeroAndNegativeSoftmaxScale) {
  for (float scale : {0.0f, -0.5f, 0.3f}) {
    ValidCall call;
    call.problem.softmax_scale = scale;
    const Status status = call.validate();
    EXPECT_TRUE(status.ok()) << "scale " << scale << ": " << status.message();
  }
}

TEST(Validation, RejectsBadDtype) {
  ValidCall call;
  call.problem.dtype = static_cast<DType>(7);
  expect_invalid(call, "dtype");
}

TEST(Validation, RejectsNonPositiveBatch) {
  for (int batch : {0, -1}) {
    ValidCall call;
    call.problem.batch = batch;
    call.args.metadata_batch = batch;
    expect_invalid(call, "batch");
  }
}

TEST(Validation, RejectsNonPositiveSeqlenQ) {
  ValidCall call;
  call.problem.seqlen_q = 0;
  expect_invalid(call, "seqlen_q");
}

TEST(Validation, RejectsNonPositiveNumHeadsQ) {
  ValidCall call;
  call.problem.num_heads_q = 0;
  expect_invalid(call, "num_heads_q");
}

TEST(Validation, RejectsNonPositiveNumHeadsKv) {
  for (int h_kv : {0, -2}) {
    ValidCall call;
    call.problem.num_heads_kv = h_kv;
    expect_invalid(call, "num_heads_kv");
  }
}

TEST(Validation, RejectsHeadsQNotMultipleOfHeadsKv) {
  ValidCall call;
  call.problem.num_heads_q = 33;  // 33 % 2 != 0
  expect_invalid(call, "num_heads_q");
}

TEST(Validation, RejectsHeadDimOtherThan576) {
  ValidCall call;
  call.problem.head_dim = 575;
  expect_invalid(call, "head_dim");
}

TEST(Validation, RejectsHeadDimVOtherThan512) {
  ValidCall call;
  call.problem.head_dim_v = 576;
  expect_invalid(call, "head_dim_v");
}

TEST(Validation, RejectsPageBlockSizeOtherThan64) {
  for (int page : {32, 128, 0}) {
    ValidCall call;
    call.problem.page_block_size = page;
    expect_invalid(call, "page_block_size");
  }
}

TEST(Validation, RejectsNonPositiveNumBlocks) {
  ValidCall call;
  call.problem.num_blocks = 0;
  expect_invalid(call, "num_blocks");
}

TEST(Validation, RejectsNonPositiveMaxBlocksPerSeq) {
  ValidCall call;
  call.problem.max_blocks_per_seq = 0;  // block_table_batch_stride stays valid (10 >= 0)
  expect_invalid(call, "max_blocks_per_seq");
}

TEST(Validation, RejectsNonFiniteSoftmaxScale) {
  for (float scale : {std::numeric_limits<float>::quiet_NaN(),
                      std::numeric_limits<float>::infinity(),
                      -std::numeric_limits<float>::infinity()}) {
    ValidCall call;
    call.problem.softmax_scale = scale;
    SCOPED_TRACE(scale);
    expect_invalid(call, "softmax_scale");
  }
}

TEST(Validation, RejectsBadKernelChoice) {
  ValidCall call;
  call.problem.kernel = static_cast<KernelChoice>(9);
  expect_invalid(call, "kernel");
}

TEST(Validation, RejectsEachNullPointer) {
  struct Case { const char* field; void (*clear)(DecodeArgs&); };
  const Case cases[] = {
      {"q", [](DecodeArgs& a) { a.q = nullptr; }},
      {"k_cache", [](DecodeArgs& a) { a.k_cache = nullptr; }},
      {"block_table", [](DecodeArgs& a) { a.block_table = nullptr; }},
      {"cache_seqlens", [](DecodeArgs& a) { a.cache_seqlens = nullptr; }},
      {"tile_scheduler_metadata", [](DecodeArgs& a) { a.tile_scheduler_metadata = nullptr; }},
      {"num_splits", [](DecodeArgs& a) { a.num_splits = nullptr; }},
      {"out", [](DecodeArgs& a) { a.out = nullptr; }},
      {"lse", [](DecodeArgs& a) { a.lse = nullptr; }},
  };
  for (const Case& c : cases) {
    ValidCall call;
    c.clear(call.args);
    SCOPED_TRACE(c.field);
    expect_invalid(call, c.field);
  }
}

TEST(Validation, RejectsMisalignedTensorPointers) {
  // 2-byte aligned (a legal address for a 16-bit element) but not 16-byte aligned.
  for (const char* field : {"q", "k_cache", "out"}) {
    ValidCall call;
    const std::string name = field;
    if (name == "q") call.args.q = fake_device_pointer<const void>(0x10000 + 2);
    if (name == "k_cache") call.args.k_cache = fake_device_pointer<const void>(0x20000 + 8);
    if (name == "out") call.args.out = fake_device_pointer<void>(0x70000 + 2);
    SCOPED_TRACE(field);
    expect_invalid(call, field);
  }
}

TEST(Validation, RejectsStridesNotMultipleOf8OrNegative) {
  struct Case { const char* field; int64_t DecodeArgs::*stride; };
  const Case cases[] = {
      {"q_batch_stride", &DecodeArgs::q_batch_stride},
      {"q_seq_stride", &DecodeArgs::q_seq_stride},
      {"q_head_stride", &DecodeArgs::q_head_stride},
      {"k_block_stride", &DecodeArgs::k_block_stride},
      {"k_token_stride", &DecodeArgs::k_token_stride},
      {"k_head_stride", &DecodeArgs::k_head_stride},
      {"out_batch_stride", &DecodeArgs::out_batch_stride},
      {"out_seq_stride", &DecodeArgs::out_seq_stride},
      {"out_head_stride", &DecodeArgs::out_head_stride},
  };
  for (const Case& c : cases) {
    for (int64_t delta : {int64_t{1}, int64_t{4}}) {  // +1 and +4 elements: 2 and 8 bytes off
      ValidCall call;
      call.args.*c.stride += delta;
      SCOPED_TRACE(std::string(c.field) + " + " + std::to_string(delta));
      expect_invalid(call, c.field);
    }
    ValidCall call;
    call.args.*c.stride = -(call.args.*c.stride);
    SCOPED_TRACE(std::string(c.field) + " negated");
    expect_invalid(call, c.field);
  }
}

TEST(Validation, RejectsBlockTableStrideBelowMaxBlocksPerSeq) {
  ValidCall call;
  call.args.block_table_batch_stride = call.problem.max_blocks_per_seq - 1;
  expect_invalid(call, "block_table_batch_stride");
}

TEST(Validation, RejectsMetadataForAnotherBatch) {
  ValidCall call;
  call.args.metadata_batch = call.problem.batch + 1;
  expect_invalid(call, "metadata_batch");
}

TEST(Validation, RejectsNumSmPartsOutsideGridLimit) {
  for (int parts : {0, -3, 65536}) {
    ValidCall call;
    call.args.num_sm_parts = parts;
    expect_invalid(call, "num_sm_parts");
  }
}

TEST(Validation, RejectsWorkspaceSmallerThanReported) {
  ValidCall call;
  call.args.workspace_bytes -= 1;
  expect_rejected(call, StatusCode::kWorkspaceTooSmall, "workspace_bytes");
}

TEST(Validation, RejectsNullWorkspaceWhenOneIsNeeded) {
  ValidCall call;
  ASSERT_GT(call.args.workspace_bytes, 0u);
  call.args.workspace = nullptr;
  expect_invalid(call, "workspace");
}

TEST(Validation, WorkspaceSizeRejectsNumSmPartsOutsideGridLimit) {
  ValidCall call;
  for (int parts : {0, -1, 65536}) {
    size_t bytes = 12345;
    const Status status = get_workspace_size(call.problem, parts, &bytes);
    EXPECT_EQ(status.code(), StatusCode::kInvalidArgument) << status.message();
    EXPECT_NE(status.message().find("num_sm_parts"), std::string::npos) << status.message();
  }
}

TEST(Validation, WorkspaceGrowsWithNumSmParts) {
  ValidCall call;
  size_t small = 0, large = 0;
  ASSERT_TRUE(get_workspace_size(call.problem, 1, &small).ok());
  ASSERT_TRUE(get_workspace_size(call.problem, 264, &large).ok());
  EXPECT_LE(small, large);
}

TEST(Names, StatusCodeAndKernelNamesAreNonEmpty) {
  for (StatusCode code : {StatusCode::kOk, StatusCode::kInvalidArgument,
                          StatusCode::kNotSupported, StatusCode::kWorkspaceTooSmall,
                          StatusCode::kCudaError}) {
    const char* name = status_code_name(code);
    ASSERT_NE(name, nullptr);
    EXPECT_GT(std::string(name).size(), 0u);
  }
  for (KernelChoice kernel : {KernelChoice::kAuto, KernelChoice::kPortable}) {
    const char* name = kernel_name(kernel);
    ASSERT_NE(name, nullptr);
    EXPECT_GT(std::string(name).size(), 0u);
  }
}

}  // namespace
}  // namespace flash_mla
