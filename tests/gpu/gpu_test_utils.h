// Shared pieces of the GPU tests: skipping without a device, device buffers, seeded random
// inputs with NaN-poisoned padding and shuffled block tables, running one decode, and comparing
// it with the float64 reference. Only the CUDA runtime API is used (no device code here).
#pragma once

#include <cuda_runtime_api.h>
#include <gtest/gtest.h>

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <flash_mla/flash_mla.h>
#include "reference/reference.h"

namespace flash_mla::test {

// ---------------------------------------------------------------------------------------------
// Assertions and skipping
// ---------------------------------------------------------------------------------------------
#define FLASH_MLA_CUDA_ASSERT(expr)                                                         \
  do {                                                                                      \
    const cudaError_t flash_mla_err_ = (expr);                                              \
    ASSERT_EQ(flash_mla_err_, cudaSuccess) << #expr << ": " << cudaGetErrorString(flash_mla_err_); \
  } while (0)

#define FLASH_MLA_ASSERT_OK(expr)                                                           \
  do {                                                                                      \
    const ::flash_mla::Status flash_mla_status_ = (expr);                                   \
    ASSERT_TRUE(flash_mla_status_.ok())                                                     \
        << #expr << ": " << ::flash_mla::status_code_name(flash_mla_status_.code()) << ": " \
        << flash_mla_status_.message();                                                     \
  } while (0)

// Skips the current test (with the reason) when there is no usable CUDA device.
#define FLASH_MLA_SKIP_WITHOUT_GPU()                                                        \
  do {                                                                                      \
    std::string flash_mla_why_;                                                             \
    if (!::flash_mla::test::gpu_available(&flash_mla_why_)) GTEST_SKIP() << flash_mla_why_; \
  } while (0)

// True when device 0 exists and the library supports it; otherwise *reason says why.
bool gpu_available(std::string* reason);

// ---------------------------------------------------------------------------------------------
// Device memory
// ---------------------------------------------------------------------------------------------
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  DeviceBuffer(DeviceBuffer&& other) noexcept { *this = std::move(other); }
  DeviceBuffer& operator=(DeviceBuffer&& other) noexcept {
    std::swap(ptr_, other.ptr_);
    std::swap(bytes_, other.bytes_);
    return *this;
  }
  ~DeviceBuffer() { if (ptr_ != nullptr) cudaFree(ptr_); }

  cudaError_t allocate(size_t bytes);  // frees what it held; 0 bytes holds nothing
  cudaError_t upload(const void* host, size_t bytes);
  cudaError_t download(void* host, size_t bytes) const;

  template <typename T = void>
  T* get() const { return static_cast<T*>(ptr_); }
  size_t bytes() const { return bytes_; }

 private:
  void* ptr_ = nullptr;
  size_t bytes_ = 0;
};

// Allocates a device copy of a host vector.
template <typename T>
cudaError_t upload_vector(const std::vector<T>& host, DeviceBuffer* device) {
  const cudaError_t err = device->allocate(host.size() * sizeof(T));
  return err != cudaSuccess ? err : device->upload(host.data(), host.size() * sizeof(T));
}

// ---------------------------------------------------------------------------------------------
// 16-bit values
// ---------------------------------------------------------------------------------------------
// 0xFFFF is a NaN in bf16 and in fp16, and 0xFFFFFFFF a NaN in fp32: memset(0xFF) poisons all.
inline constexpr uint16_t kNanBits16 = 0xFFFF;
inline constexpr int kNanByte = 0xFF;

float to_float(DType dtype, uint16_t bits);
uint16_t from_float(DType dtype, float value);

// ---------------------------------------------------------------------------------------------
// Inputs
// ---------------------------------------------------------------------------------------------
struct DecodeShape {
  DType dtype = DType::kBF16;
  std::vector<int32_t> seqlens;  // one per batch element
  int seqlen_q = 1;
  int num_heads_q = 16;
  int num_heads_kv = 1;
  bool causal = false;
  std::optional<float> softmax_scale;
  KernelChoice kernel = KernelChoice::kAuto;
  bool padded_strides = false;  // q / k_cache / out / lse / block_table with gaps between rows
};

// Host side of one decode problem. The *_bits arrays are laid out with args' strides (what is
// uploaded); q_values / k_values are the same numbers densely packed for the reference.
struct HostInputs {
  DecodeProblem problem;
  DecodeArgs args;  // strides only; pointers are filled by prepare_decode
  ref::RefProblem ref_problem;
  std::vector<uint16_t> q_bits, k_bits;
  std::vector<float> q_values, k_values;
  std::vector<int32_t> block_table;        // [batch, block_table_batch_stride], garbage past use
  std::vector<int32_t> block_table_dense;  // [batch, max_blocks_per_seq] for the reference
  std::vector<int32_t> seqlens;

  size_t out_elements() const;  // extent of out in elements, padding included
  size_t lse_elements() const;
};

// q, k ~ N(0, 1) rounded to the dtype; pages shuffled; block-table entries past each sequence's
// last page are garbage (-1, 1 << 30, random large); every KV slot past L_b, every unused page
// and every stride gap is NaN.
HostInputs make_random_inputs(const DecodeShape& shape, uint64_t seed);

// 64-bit FNV-1a, to derive a stable seed from a test name.
uint64_t seed_from_name(const std::string& name);

// Seeded lengths uniform in [lo, hi].
std::vector<int32_t> random_lengths(int batch, int lo, int hi, uint64_t seed);

// ---------------------------------------------------------------------------------------------
// Running
// ---------------------------------------------------------------------------------------------
// Device copies of the inputs, the schedule, the workspace and the outputs of one call.
struct DeviceDecode {
  DeviceBuffer q, k_cache, block_table, seqlens, metadata, num_splits, workspace, out, lse;
  DecodeProblem problem;
  DecodeArgs args;
  int num_sm_parts = 0;
};

// Uploads the inputs, computes the schedule on `stream` (num_sm_parts 0: ask get_num_sm_parts)
// and allocates workspace and outputs; d->args is then ready for decode(). Uses gtest asserts.
void prepare_decode(const HostInputs& in, int num_sm_parts, cudaStream_t stream, DeviceDecode* d);

struct DecodeResult {
  std::vector<uint16_t> out;  // out's raw bits with its strides
  std::vector<float> lse;     // lse with its strides
};

// prepare_decode, outputs filled with NaN, decode, synchronise, download.
void run_decode(const HostInputs& in, int num_sm_parts, cudaStream_t stream, DecodeResult* r);

// Copies the outputs back after the caller synchronised.
void download_outputs(const DeviceDecode& d, DecodeResult* r);

// ---------------------------------------------------------------------------------------------
// Comparing
// ---------------------------------------------------------------------------------------------
struct ErrorStats {
  size_t rows_compared = 0, empty_rows = 0;
  double out_rel_frobenius = 0.0;       // ||out - ref|| / ||ref|| over the compared rows
  double baseline_rel_frobenius = 0.0;  // the same for ref rounded to the dtype
  double out_cosine_distance = 0.0;     // 1 - <out, ref> / (|out| |ref|)
  double lse_max_rel_error = 0.0;       // max |lse - ref| / max(1, |ref|) over non-empty rows
  double lse_baseline_rel_error = 0.0;  // the same for ref rounded to fp32
};

// Checks (as gtest failures) what must hold exactly: every out element finite, out padding
// untouched, lse never NaN, lse = +inf and out = 0 exactly on the reference's empty rows and
// only there. Measures the errors over every row, or `sampled_rows` seeded random rows.
ErrorStats compare_with_reference(const HostInputs& in, const DecodeResult& r, int sampled_rows,
                                  uint64_t seed);

std::string describe(const ErrorStats& s);

// The error bounds of a decode against the float64 reference, per dtype:
//   relative Frobenius error of out: bf16 <= 8e-3, fp16 <= 2e-3.
//     Rounding the exact result to the output dtype alone costs about u / sqrt(3) in RMS
//     relative terms (u = 2^-8 for bf16: ~2.3e-3; 2^-11 for fp16: ~2.8e-4; each case prints it
//     next to the measured error). The kernel also rounds the softmax probabilities to the
//     16-bit type before the P.V product; with random V those errors add in quadrature, so
//     another ~u / sqrt(3) in RMS. fp32 accumulation (QK^T over 576 channels, PV over L keys,
//     the split merge) adds ~1e-6. Expected: ~3e-3 (bf16), ~4e-4 (fp16); the bounds leave
//     about 3x (bf16) and 5x (fp16) margin while a wrong row, head or mask is off by O(1).
//   cosine distance 1 - cos(out, ref) over all compared elements: <= 1e-5 for both.
//     For a relative error e that is uncorrelated with the reference, 1 - cos ~ e^2 / 2:
//     ~5e-6 at bf16's expected 3e-3. A systematic bias (e.g. a dropped key) shows here first.
//   lse: max |lse - ref| / max(1, |ref|) <= 1e-5 (max(1, .) because lse can be ~0).
//     lse is fp32 all the way; the scores come from exact 16-bit x 16-bit products summed in
//     fp32 over 576 channels, an absolute error of ~u32 * sqrt(576) * |s| ~ 1e-6 at the default
//     scale, and log-sum-exp of fp32 terms adds ~1e-7 relative.
inline constexpr double kMaxRelFrobeniusBf16 = 8e-3;
inline constexpr double kMaxRelFrobeniusFp16 = 2e-3;
inline constexpr double kMaxCosineDistance = 1e-5;
inline constexpr double kMaxLseRelError = 1e-5;

// Checks (as gtest failures) the measured errors against those bounds; call it only where some
// compared row has keys (on empty rows compare_with_reference's exact checks are the test).
void expect_within_error_bounds(DType dtype, const ErrorStats& s);

}  // namespace flash_mla::test
