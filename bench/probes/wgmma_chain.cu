// Probe: how long the wide kernel's wgmma batches take on one SM, with no loads and no softmax,
// so a schedule can be designed against measured costs rather than assumed ones.
//
// One CTA per SM, one or two warpgroups each issuing, per repetition:
//   s_ss      Q·Kᵀ of one page: 36 m64n64k16, A (Q) and B (K) from shared memory
//   s_rs      the same with A from registers
//   s_ss128   Q·Kᵀ of two pages at once: 36 m64n128k16 (B = both pages' boxes)
//   pv        P·V of one page pair for one half of O: 8 m64n256k16, P from registers
//   pair      one consumer's share of a pair: pv, then s_ss, issued back to back, one wait
// each over `chains` independent accumulators (k-steps dealt round robin), then waits for
// them. Prints cycles per repetition (clock64, warpgroup 0) and the ratio to the tensor work
// at 1024 dense FLOP per cycle per SM sub-partition (m64n64k16 = 32 cycles of an SM).
//
// Build and run on the device: nvcc -O3 -std=c++17 -arch=sm_90a -Isrc -Ibench/probes
//   bench/probes/wgmma_chain.cu -o wgmma_chain && ./wgmma_chain
#include <cuda_runtime.h>

#include <cstdio>
#include <cstdlib>
#include <vector>

#include "kernels/sm90/ptx_sm90.h"
namespace flash_mla::ptx {
#include "probe_ops.inc"
}  // namespace flash_mla::ptx

namespace ptx = flash_mla::ptx;

enum Mode { kSss, kSrs, kSss128, kPv, kPair };

constexpr int kSmem = 200 * 1024;
constexpr int kSubTile = 8192;  // 64 rows x 128 B
constexpr int kQkSteps = 36;

#define CHECK(x)                                                                        \
  do {                                                                                  \
    cudaError_t e_ = (x);                                                               \
    if (e_ != cudaSuccess) {                                                            \
      std::fprintf(stderr, "%s:%d %s: %s\n", __FILE__, __LINE__, #x, cudaGetErrorString(e_)); \
      std::exit(1);                                                                     \
    }                                                                                   \
  } while (0)

__device__ __forceinline__ uint64_t kmajor(const char* base, int step, int sub_bytes) {
  return ptx::smem_descriptor(base + (step / 4) * sub_bytes + (step % 4) * 32, 16, 1024,
                              ptx::Swizzle::k128B);
}
__device__ __forceinline__ uint64_t vdesc(const char* base, int step) {
  return ptx::smem_descriptor(base + step * 16 * 128, kSubTile, 1024, ptx::Swizzle::k128B);
}

template <int kChains>
__device__ __forceinline__ void s_ss(const char* q, const char* k, float (&s)[kChains][32]) {
#pragma unroll
  for (int i = 0; i < kQkSteps; ++i) {
    ptx::wgmma_ss_m64n64k16(s[i % kChains], kmajor(q, i, kSubTile), kmajor(k, i, kSubTile),
                            i >= kChains ? 1u : 0u, __nv_bfloat16{});
  }
}

template <int kMode, int kChains>
__global__ void __launch_bounds__(256, 1) probe(int wgs, int reps, long long* cycles, float* sink) {
  extern __shared__ __align__(1024) char smem[];
  for (int i = threadIdx.x; i < kSmem / 16; i += blockDim.x) {
    reinterpret_cast<uint4*>(smem)[i] = make_uint4(0, 0, 0, 0);
  }
  ptx::fence_proxy_async_shared();
  __syncthreads();
  const int wg = threadIdx.x / 128;
  if (wg >= wgs) return;
  const char* q0 = smem;                       // 72 KiB
  const char* k0 = smem + 9 * kSubTile;        // 72 KiB (two pages' worth for s_ss128: 128 KiB)
  float s[kChains][32];
  float o[128];
#pragma unroll
  for (int i = 0; i < 128; ++i) o[i] = 0.f;
  uint32_t a[4] = {0, 0, 0, 0};
  float acc = 0.f;
  long long t0 = 0;
  for (int r = -1; r < reps; ++r) {
    if (r == 0) t0 = clock64();
    // Opaque per repetition, so the descriptors are built per batch as in the kernel rather
    // than hoisted out of the loop into registers.
    const char* q = q0;
    const char* k = k0;
    asm volatile("" : "+l"(q), "+l"(k));
    const char* kb = k + (wg ? 4 * kSubTile : 0);
    ptx::wgmma_fence();
    if constexpr (kMode == kSss) {
      s_ss<kChains>(q, kb, s);
    } else if constexpr (kMode == kSrs) {
#pragma unroll
      for (int i = 0; i < kQkSteps; ++i) {
        ptx::wgmma_rs_m64n64k16(s[i % kChains], a, kmajor(kb, i, kSubTile), i >= kChains ? 1u : 0u,
                                __nv_bfloat16{});
      }
    } else if constexpr (kMode == kSss128) {
      float w[64];
#pragma unroll
      for (int i = 0; i < kQkSteps; ++i) {
        ptx::wgmma_ss_m64n128k16(w, kmajor(q, i, kSubTile), kmajor(k, i % 8, 2 * kSubTile),
                                 i > 0 ? 1u : 0u, __nv_bfloat16{});
      }
      ptx::wgmma_commit();
      ptx::wgmma_wait<0>();
#pragma unroll
      for (int i = 0; i < 64; ++i) acc += w[i];
    } else {
#pragma unroll
      for (int i = 0; i < 8; ++i) {
        ptx::wgmma_rs_m64n256k16(o, a, vdesc(kb, i % 4), 1u, __nv_bfloat16{});
      }
      if constexpr (kMode == kPair) s_ss<kChains>(q, kb, s);
    }
    ptx::wgmma_commit();
    ptx::wgmma_wait<0>();
    if constexpr (kMode != kPv && kMode != kSss128) {
#pragma unroll
      for (int c = 0; c < kChains; ++c) {
#pragma unroll
        for (int i = 0; i < 32; ++i) acc += s[c][i];
      }
    }
  }
  const long long t1 = clock64();
  for (int i = 0; i < 128; ++i) acc += o[i];
  if (threadIdx.x % 128 == 0) cycles[blockIdx.x * 2 + wg] = (t1 - t0) / reps;
  if (acc == 1.f) *sink = acc;  // keeps the results live
}

template <int kMode, int kChains>
void run(const char* name, int ctas, int wgs, double work_cycles) {
  auto kern = probe<kMode, kChains>;
  CHECK(cudaFuncSetAttribute(kern, cudaFuncAttributeMaxDynamicSharedMemorySize, kSmem));
  constexpr int kReps = 200;  // batches per warpgroup and launch; the first one is not timed
  long long* d_cycles;
  float* d_sink;
  CHECK(cudaMalloc(&d_cycles, ctas * 2 * sizeof(long long)));
  CHECK(cudaMalloc(&d_sink, sizeof(float)));
  CHECK(cudaMemset(d_cycles, 0, ctas * 2 * sizeof(long long)));
  cudaEvent_t e0, e1;
  CHECK(cudaEventCreate(&e0));
  CHECK(cudaEventCreate(&e1));
  kern<<<ctas, 256, kSmem>>>(wgs, kReps, d_cycles, d_sink);  // warm-up
  CHECK(cudaEventRecord(e0));
  kern<<<ctas, 256, kSmem>>>(wgs, kReps, d_cycles, d_sink);
  CHECK(cudaEventRecord(e1));
  CHECK(cudaGetLastError());
  CHECK(cudaEventSynchronize(e1));
  float ms = 0.f;
  CHECK(cudaEventElapsedTime(&ms, e0, e1));
  std::vector<long long> h(size_t(ctas) * 2);
  CHECK(cudaMemcpy(h.data(), d_cycles, h.size() * sizeof(long long), cudaMemcpyDeviceToHost));
  double mean = 0;
  for (int i = 0; i < ctas; ++i) mean += double(h[2 * i]);
  mean /= ctas;
  // Work of all warpgroups of the CTA, shared by the SM's tensor cores.
  const double total_work = work_cycles * wgs;
  std::printf("%-10s wgs=%d chains=%d  %8.0f cycles/rep  work %6.0f  tensor busy %5.1f%%  (%.1f ns/rep)\n",
              name, wgs, kChains, mean, total_work, 100.0 * total_work / mean, 1e6 * ms / kReps);
  CHECK(cudaEventDestroy(e0));
  CHECK(cudaEventDestroy(e1));
  CHECK(cudaFree(d_cycles));
  CHECK(cudaFree(d_sink));
}

int main() {
  cudaDeviceProp prop;
  CHECK(cudaGetDeviceProperties(&prop, 0));
  const int sms = prop.multiProcessorCount;  // one CTA per SM (the shared memory allows no more)
  std::printf("%s, %d SMs\n", prop.name, sms);
  const double s_work = 36 * 32.0, s128_work = 36 * 64.0, pv_work = 8 * 128.0;
  for (int wgs = 1; wgs <= 2; ++wgs) {
    run<kSss, 1>("s_ss", sms, wgs, s_work);
    run<kSss, 2>("s_ss", sms, wgs, s_work);
    run<kSss, 3>("s_ss", sms, wgs, s_work);
    run<kSrs, 1>("s_rs", sms, wgs, s_work);
    run<kSrs, 2>("s_rs", sms, wgs, s_work);
    run<kSss128, 1>("s_ss128", sms, wgs, s128_work);
    run<kPv, 1>("pv", sms, wgs, pv_work);
    run<kPair, 1>("pair", sms, wgs, pv_work + s_work);
    run<kPair, 2>("pair", sms, wgs, pv_work + s_work);
  }
  return 0;
}
