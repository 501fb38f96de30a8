// exp123 probe: cuBLAS 8192^3 GEMM, bf16 against fp16 inputs (fp32 accumulate, output in the
// input type), the same Normal(0, 1) data, 20 timed GEMMs per side and round, order alternating.
#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cstdio>
#include <cstdint>
#include <algorithm>
#include <vector>
#include <unistd.h>
#define CK(x) do { auto e_ = (x); if (e_ != 0) { printf("error %d at %d\n", int(e_), __LINE__); return 1; } } while (0)
__device__ uint64_t sm64(uint64_t x) { x += 0x9E3779B97F4A7C15ull; x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull; x = (x ^ (x >> 27)) * 0x94D049BB133111EBull; return x ^ (x >> 31); }
template <class T> __global__ void fill(T* d, int64_t n, uint64_t seed) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    uint64_t h = sm64(seed ^ sm64(i));
    float u1 = (float(h >> 40) + 1.f) / 16777217.f, u2 = float((h >> 16) & 0xFFFFFF) / 16777216.f;
    d[i] = T(sqrtf(-2.f * logf(u1)) * cospif(2.f * u2));
  }
}
int main() {
  const int N = 8192; const int64_t E = int64_t(N) * N;
  void *a16, *b16, *c16, *abf, *bbf, *cbf;
  CK(cudaMalloc(&a16, E * 2)); CK(cudaMalloc(&b16, E * 2)); CK(cudaMalloc(&c16, E * 2));
  CK(cudaMalloc(&abf, E * 2)); CK(cudaMalloc(&bbf, E * 2)); CK(cudaMalloc(&cbf, E * 2));
  fill<<<4096, 256>>>((__half*)a16, E, 1); fill<<<4096, 256>>>((__half*)b16, E, 2);
  fill<<<4096, 256>>>((__nv_bfloat16*)abf, E, 1); fill<<<4096, 256>>>((__nv_bfloat16*)bbf, E, 2);
  CK(cudaDeviceSynchronize());
  cublasHandle_t h; CK(cublasCreate(&h));
  float al = 1.f, be = 0.f;
  auto gemm = [&](bool f16) {
    return cublasGemmEx(h, CUBLAS_OP_N, CUBLAS_OP_N, N, N, N, &al, f16 ? a16 : abf, f16 ? CUDA_R_16F : CUDA_R_16BF, N,
                        f16 ? b16 : bbf, f16 ? CUDA_R_16F : CUDA_R_16BF, N, &be, f16 ? c16 : cbf,
                        f16 ? CUDA_R_16F : CUDA_R_16BF, N, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
  };
  cudaEvent_t e0, e1; CK(cudaEventCreate(&e0)); CK(cudaEventCreate(&e1));
  auto time = [&](bool f16) {
    std::vector<float> t;
    for (int w = 0; w < 3; ++w) gemm(f16);
    for (int r = 0; r < 20; ++r) { cudaEventRecord(e0); gemm(f16); cudaEventRecord(e1); cudaEventSynchronize(e1); float ms; cudaEventElapsedTime(&ms, e0, e1); t.push_back(ms); }
    std::sort(t.begin(), t.end()); return 2.0 * N * double(N) * N / (t[10] * 1e-3) / 1e12;
  };
  printf("round  bf16 TFLOPS  fp16 TFLOPS  fp16/bf16\n");
  for (int r = 0; r < 8; ++r) {
    usleep(300000);
    double x, y;
    if (r % 2 == 0) { x = time(false); usleep(300000); y = time(true); } else { y = time(true); usleep(300000); x = time(false); }
    printf("%5d  %11.1f  %11.1f  %+8.2f%%\n", r, x, y, 100 * (y / x - 1));
  }
  return 0;
}
