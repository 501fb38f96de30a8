// The device metadata kernel (compute_metadata) equals its host twin bit for bit (SPEC §4);
// the schedule's properties themselves are tested on the host (tests/cpu/test_metadata.cpp).
#include <gtest/gtest.h>

#include <algorithm>
#include <random>
#include <string>
#include <vector>

#include "gpu/gpu_test_utils.h"
#include "scheduler/chain.h"
#include "scheduler/metadata.h"

namespace flash_mla::test {
namespace {

// Lengths with zeros, page boundaries, long and very long sequences.
std::vector<int32_t> mixed_lengths(int batch, uint64_t seed) {
  std::mt19937_64 rng(seed);
  const int32_t edges[] = {0, 1, 63, 64, 65, 131072, 1000000};
  std::uniform_int_distribution<int> pick(0, 9);
  std::uniform_int_distribution<int32_t> any_len(0, 20000);
  std::vector<int32_t> lengths(batch);
  for (int32_t& len : lengths) {
    const int k = pick(rng);
    len = k < 7 ? edges[k] : any_len(rng);
  }
  return lengths;
}

// Runs compute_metadata on `stream` into NaN-poisoned buffers and compares with the host twin.
void expect_device_matches_host(const std::vector<int32_t>& seqlens, int num_parts,
                                cudaStream_t stream, int rows = 16) {
  const int batch = static_cast<int>(seqlens.size());
  SCOPED_TRACE("batch " + std::to_string(batch) + ", parts " + std::to_string(num_parts) +
               ", rows " + std::to_string(rows));
  std::vector<int32_t> host_metadata(static_cast<size_t>(num_parts) * kMetadataFields);
  std::vector<int32_t> host_splits(batch + 1);
  detail::compute_metadata_host(seqlens.data(), batch, rows, num_parts, host_metadata.data(),
                                host_splits.data());

  DeviceBuffer d_seqlens, d_metadata, d_splits;
  FLASH_MLA_CUDA_ASSERT(upload_vector(seqlens, &d_seqlens));
  FLASH_MLA_CUDA_ASSERT(d_metadata.allocate(host_metadata.size() * sizeof(int32_t)));
  FLASH_MLA_CUDA_ASSERT(d_splits.allocate(host_splits.size() * sizeof(int32_t)));
  FLASH_MLA_CUDA_ASSERT(cudaMemset(d_metadata.get(), kNanByte, d_metadata.bytes()));
  FLASH_MLA_CUDA_ASSERT(cudaMemset(d_splits.get(), kNanByte, d_splits.bytes()));
  FLASH_MLA_CUDA_ASSERT(cudaDeviceSynchronize());

  FLASH_MLA_ASSERT_OK(compute_metadata(d_seqlens.get<int32_t>(), batch, rows,
                                       /*num_heads_kv=*/1, d_metadata.get<int32_t>(), num_parts,
                                       d_splits.get<int32_t>(), stream));
  FLASH_MLA_CUDA_ASSERT(cudaStreamSynchronize(stream));

  std::vector<int32_t> device_metadata(host_metadata.size()), device_splits(host_splits.size());
  FLASH_MLA_CUDA_ASSERT(d_metadata.download(device_metadata.data(), d_metadata.bytes()));
  FLASH_MLA_CUDA_ASSERT(d_splits.download(device_splits.data(), d_splits.bytes()));
  EXPECT_EQ(device_splits, host_splits) << "num_splits differs";
  for (size_t k = 0; k < host_metadata.size(); ++k) {
    ASSERT_EQ(device_metadata[k], host_metadata[k])
        << "metadata differs at part " << k / kMetadataFields << ", field "
        << k % kMetadataFields;
  }
}

TEST(MetadataGpu, DeviceEqualsHostTwin) {
  FLASH_MLA_SKIP_WITHOUT_GPU();
  for (int batch : {1, 128, 4096, 10000}) {
    for (int num_parts : {1, 7, 132, 300}) {
      expect_device_matches_host(mixed_lengths(batch, 1000 * batch + num_parts), num_parts,
                                 nullptr);
      if (HasFatalFailure()) return;
    }
  }
}

TEST(MetadataGpu, EdgeLengthsMatchHostTwin) {
  FLASH_MLA_SKIP_WITHOUT_GPU();
  for (int num_parts : {1, 132}) {
    expect_device_matches_host(std::vector<int32_t>(4096, 0), num_parts, nullptr);  // all empty
    expect_device_matches_host({131072}, num_parts, nullptr);
    expect_device_matches_host(std::vector<int32_t>(128, 64), num_parts, nullptr);
    if (HasFatalFailure()) return;
  }
  // Equal lengths where a split-free width lies within the slack (schedule.h), and where not.
  for (int rows : {1, 16, 64, 256}) {
    for (int len : {4096, 8192, 16384, 32768}) {
      for (int num_parts : {33, 66, 132}) {
        expect_device_matches_host(std::vector<int32_t>(128, len), num_parts, nullptr, rows);
        if (HasFatalFailure()) return;
      }
    }
    expect_device_matches_host(mixed_lengths(4096, rows), 132, nullptr, rows);
  }
}

// The chain schedule (scheduler/chain.h): mixed lengths and the bench's Normal(s_k, s_k / 2)
// lengths (and equal page counts, which keep the line schedule) at 32-128 rows, from the fewest
// sequences it takes (3/4 of a sequence a part) to the most (2 (2 P - 1), or kChainMaxBatch), up
// to the most parts it takes. At least one case of each shape must take it, or this test would
// not be testing it.
TEST(MetadataGpu, ChainScheduleMatchesHostTwin) {
  FLASH_MLA_SKIP_WITHOUT_GPU();
  struct Shape { int batch, num_parts; };
  for (const Shape& shape : {Shape{3, 4}, Shape{7, 6}, Shape{50, 66}, Shape{128, 66},
                             Shape{131, 66}, Shape{99, 132}, Shape{128, 132}, Shape{263, 132},
                             Shape{511, 256}, Shape{130, 33}, Shape{262, 66}, Shape{511, 132}}) {
    int chains = 0;
    for (int rows : {32, 64, 128}) {
      for (int kind = 0; kind < 3; ++kind) {
        std::vector<int32_t> seqlens =
            mixed_lengths(shape.batch, 77 * shape.batch + rows + shape.num_parts);
        if (kind == 1) {
          std::mt19937_64 rng(shape.batch + shape.num_parts + rows);
          std::normal_distribution<double> normal(4096, 2048);
          for (int32_t& len : seqlens) len = std::max(0, static_cast<int>(normal(rng)));
        }
        if (kind == 2) {  // equal page counts (and an empty sequence): the line schedule
          seqlens.assign(shape.batch, 32768);
          seqlens[0] = 32705;
          seqlens[shape.batch / 2] = 0;
        }
        std::vector<int32_t> metadata(static_cast<size_t>(shape.num_parts) * kMetadataFields);
        std::vector<int32_t> splits(shape.batch + 1);
        detail::compute_metadata_host(seqlens.data(), shape.batch, rows, shape.num_parts,
                                      metadata.data(), splits.data());
        chains += sched::is_chain(metadata.data());
        expect_device_matches_host(seqlens, shape.num_parts, nullptr, rows);
        if (HasFatalFailure()) return;
      }
    }
    EXPECT_GT(chains, 0) << "batch " << shape.batch << ", parts " << shape.num_parts;
  }
}

TEST(MetadataGpu, RunsOnANonDefaultStream) {
  FLASH_MLA_SKIP_WITHOUT_GPU();
  cudaStream_t stream = nullptr;
  FLASH_MLA_CUDA_ASSERT(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  for (int batch : {1, 4096}) expect_device_matches_host(mixed_lengths(batch, 9), 132, stream);
  cudaStreamDestroy(stream);
}

TEST(MetadataGpu, NumSmPartsIsPositive) {
  FLASH_MLA_SKIP_WITHOUT_GPU();
  for (KernelChoice kernel : {KernelChoice::kAuto, KernelChoice::kPortable}) {
    for (int rows : {1, 16, 64, 128, 256}) {
      for (int h_kv : {1, 2}) {
        int parts = 0;
        FLASH_MLA_ASSERT_OK(get_num_sm_parts(rows, h_kv, kernel, &parts));
        EXPECT_GT(parts, 0) << "rows " << rows << ", h_kv " << h_kv;
      }
    }
  }
}

}  // namespace
}  // namespace flash_mla::test
