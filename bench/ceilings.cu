// The two ceilings every case is reported against, measured in the same run (SPEC §6,
// STYLE rule 11): device-to-device copy bandwidth and a large bf16 cuBLAS matrix product.
#include <cublas_v2.h>

#include <algorithm>
#include <vector>

#include "bench_common.h"

namespace bench {
namespace {

#define BENCH_CUBLAS_CHECK(expr)                                                              \
  do {                                                                                        \
    const cublasStatus_t bench_st_ = (expr);                                                  \
    if (bench_st_ != CUBLAS_STATUS_SUCCESS)                                                   \
      ::bench::die(__FILE__, __LINE__, std::string(#expr) + " -> cuBLAS status " +           \
                                           std::to_string(static_cast<int>(bench_st_)));      \
  } while (0)

constexpr size_t kCopyBytes = size_t(1) << 30;  // 1 GiB each way: far past any L2
constexpr int kGemmN = 8192;                    // 8192^3: big enough to reach the tensor-core peak
constexpr int kWarmup = 3;
constexpr int kReps = 20;
// The sustained GEMM rate: kSustainedLeadIn untimed GEMMs, then kSustainedReps timed, back to
// back (about 0.4 + 0.4 s on an H100 / H200). The burst above takes ~30 ms, before the power
// controller lowers the clock; a long decode case is timed over 100-300 ms.
constexpr int kSustainedLeadIn = 300;
constexpr int kSustainedReps = 300;

// Median time in ms of `reps` runs of `fn`, each between its own pair of events.
template <typename Fn>
double median_ms(cudaStream_t stream, int reps, Fn&& fn) {
  std::vector<cudaEvent_t> ev(2 * reps);
  for (cudaEvent_t& e : ev) BENCH_CUDA_CHECK(cudaEventCreate(&e));
  for (int r = 0; r < reps; ++r) {
    BENCH_CUDA_CHECK(cudaEventRecord(ev[2 * r], stream));
    fn();
    BENCH_CUDA_CHECK(cudaEventRecord(ev[2 * r + 1], stream));
  }
  BENCH_CUDA_CHECK(cudaStreamSynchronize(stream));
  std::vector<float> ms(reps);
  for (int r = 0; r < reps; ++r)
    BENCH_CUDA_CHECK(cudaEventElapsedTime(&ms[r], ev[2 * r], ev[2 * r + 1]));
  for (cudaEvent_t& e : ev) BENCH_CUDA_CHECK(cudaEventDestroy(e));
  std::sort(ms.begin(), ms.end());
  return reps % 2 ? ms[reps / 2] : 0.5 * (ms[reps / 2 - 1] + ms[reps / 2]);
}

double copy_gbs(cudaStream_t stream) {
  void *src = nullptr, *dst = nullptr;
  BENCH_CUDA_CHECK(cudaMalloc(&src, kCopyBytes));
  BENCH_CUDA_CHECK(cudaMalloc(&dst, kCopyBytes));
  fill_random(src, flash_mla::DType::kBF16, kCopyBytes / 2, 0xC0FFEE, 1.0f, stream);
  auto copy = [&] {
    BENCH_CUDA_CHECK(cudaMemcpyAsync(dst, src, kCopyBytes, cudaMemcpyDeviceToDevice, stream));
  };
  for (int w = 0; w < kWarmup; ++w) copy();
  const double ms = median_ms(stream, kReps, copy);
  BENCH_CUDA_CHECK(cudaFree(src));
  BENCH_CUDA_CHECK(cudaFree(dst));
  return 2.0 * static_cast<double>(kCopyBytes) / (ms * 1e-3) / 1e9;  // read + write
}

// The burst and sustained GEMM rates, and the SM clock after each, into `out`.
void measure_gemm(cudaStream_t stream, Ceilings& out) {
  const int64_t elems = static_cast<int64_t>(kGemmN) * kGemmN;
  void *a = nullptr, *b = nullptr, *c = nullptr;
  BENCH_CUDA_CHECK(cudaMalloc(&a, elems * 2));
  BENCH_CUDA_CHECK(cudaMalloc(&b, elems * 2));
  BENCH_CUDA_CHECK(cudaMalloc(&c, elems * 2));
  // Random data: zeros run measurably faster than real data on Hopper (METHOD.md).
  fill_random(a, flash_mla::DType::kBF16, elems, 0xA11CE, 1.0f, stream);
  fill_random(b, flash_mla::DType::kBF16, elems, 0xB0B, 1.0f, stream);

  cublasHandle_t handle = nullptr;
  BENCH_CUBLAS_CHECK(cublasCreate(&handle));
  BENCH_CUBLAS_CHECK(cublasSetStream(handle, stream));
  const float alpha = 1.0f, beta = 0.0f;
  auto gemm = [&] {
    BENCH_CUBLAS_CHECK(cublasGemmEx(handle, CUBLAS_OP_N, CUBLAS_OP_N, kGemmN, kGemmN, kGemmN,
                                    &alpha, a, CUDA_R_16BF, kGemmN, b, CUDA_R_16BF, kGemmN, &beta,
                                    c, CUDA_R_16BF, kGemmN, CUBLAS_COMPUTE_32F,
                                    CUBLAS_GEMM_DEFAULT));
  };
  for (int w = 0; w < kWarmup; ++w) gemm();
  const double ms = median_ms(stream, kReps, gemm);
  BENCH_CUDA_CHECK(cudaStreamSynchronize(stream));
  out.gemm_sm_mhz = sm_clock_mhz(stream);
  for (int w = 0; w < kSustainedLeadIn; ++w) gemm();
  const double ms_sustained = median_ms(stream, kSustainedReps, gemm);
  out.gemm_sustained_sm_mhz = sm_clock_mhz(stream);
  BENCH_CUBLAS_CHECK(cublasDestroy(handle));
  BENCH_CUDA_CHECK(cudaFree(a));
  BENCH_CUDA_CHECK(cudaFree(b));
  BENCH_CUDA_CHECK(cudaFree(c));
  const double flops = 2.0 * kGemmN * static_cast<double>(kGemmN) * kGemmN;
  out.gemm_tflops = flops / (ms * 1e-3) / 1e12;
  out.gemm_sustained_tflops = flops / (ms_sustained * 1e-3) / 1e12;
}

}  // namespace

Ceilings measure_ceilings(cudaStream_t stream) {
  Ceilings c;
  c.copy_gbs = copy_gbs(stream);
  measure_gemm(stream, c);
  c.measured = true;
  return c;
}

}  // namespace bench
