// Probe: how many bytes per second the L2 can deliver into the SMs' shared memory, when each
// byte is read by `share` CTAs (the wide kernel's m-blocks each read every KV page: 2 CTAs at
// 128 rows, 4 at 256) and when clusters of C CTAs load each chunk once with `.multicast::cluster`.
//
// One CTA per SM (200 KiB of dynamic shared memory), 4.5 MiB per CTA in 8 KiB bulk copies
// (PTX ISA "cp.async.bulk") through a ring of `slots` chunks completed on mbarriers, as the
// decode kernels' TMA loads are. The wide kernel keeps 18 such chunks in flight (two pages).
// TFLOPS_bound = delivered bytes/s x 120.9: a 64-row CTA does 2 x 64 x 64 x (576 + 512) FLOP
// per 73,728-byte page it receives, so no per-CTA-load schedule of it can exceed that rate.
//
// Build and run on the device: nvcc -O2 -std=c++17 -gencode arch=compute_90a,code=sm_90a
//   bench/probes/l2_delivery.cu -o l2_delivery && ./l2_delivery
#include <cstdio>
#include <cstdint>
#include <vector>
#include <algorithm>
#include <chrono>
#include <cstring>
#include <unistd.h>
#include <cuda_runtime.h>
#define CK(x) do { cudaError_t e = (x); if (e != cudaSuccess) { printf("%s:%d %s\n", __FILE__, __LINE__, cudaGetErrorString(e)); exit(1);} } while (0)
__device__ __forceinline__ uint64_t gtime() { uint64_t r; asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(r)); return r; }

constexpr int kChunk = 8192;
__global__ void stream(const char* src, size_t per_cta, int share, int strided, int slots, uint64_t* rec) {
  extern __shared__ __align__(1024) char smem[];
  __shared__ uint64_t bar[32];
  const int b = blockIdx.x;
  if (threadIdx.x != 0) return;
  const int groups = gridDim.x / share;
  const int region = strided ? b % groups : b / share;
  uint64_t policy;
  asm volatile("createpolicy.fractional.L2::evict_first.b64 %0, 1.0;" : "=l"(policy));
  uint64_t t0 = gtime();
  const char* base = src + per_cta * region;
  const int n = int(per_cta / kChunk);
  for (int i = 0; i < slots; ++i) {
    uint32_t a = uint32_t(__cvta_generic_to_shared(&bar[i]));
    asm volatile("mbarrier.init.shared::cta.b64 [%0], 1;" :: "r"(a));
  }
  asm volatile("fence.mbarrier_init.release.cluster;");
  auto issue = [&](int i) {
    int s = i % slots;
    uint32_t a = uint32_t(__cvta_generic_to_shared(&bar[s]));
    uint32_t d = uint32_t(__cvta_generic_to_shared(smem + s * kChunk));
    asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;" :: "r"(a), "r"(kChunk));
    asm volatile("cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes.L2::cache_hint [%0], [%1], %2, [%3], %4;"
                 :: "r"(d), "l"(base + size_t(i) * kChunk), "r"(kChunk), "r"(a), "l"(policy) : "memory");
  };
  for (int i = 0; i < slots && i < n; ++i) issue(i);
  uint32_t acc = 0;
  for (int i = 0; i < n; ++i) {
    int s = i % slots; uint32_t par = (i / slots) & 1;
    uint32_t a = uint32_t(__cvta_generic_to_shared(&bar[s]));
    uint32_t ok = 0;
    while (!ok) asm volatile("{ .reg .pred p; mbarrier.try_wait.parity.shared::cta.b64 p, [%1], %2; selp.u32 %0, 1, 0, p; }" : "=r"(ok) : "r"(a), "r"(par) : "memory");
    acc += *reinterpret_cast<volatile uint32_t*>(smem + s * kChunk);
    if (i + slots < n) issue(i + slots);
  }
  uint64_t t1 = gtime();
  rec[2 * b] = t0; rec[2 * b + 1] = t1 + (acc == 12345u);
}


// Multicast: a cluster of C CTAs reads one region; chunk i is loaded by rank i % C into all C.
// Warp 0 consumes, warp 1 issues (waits for the slot to be free in every CTA of the cluster).
__device__ __forceinline__ void wait_bar(uint64_t* bar, uint32_t par) {
  uint32_t a = uint32_t(__cvta_generic_to_shared(bar)), ok = 0;
  while (!ok) asm volatile("{ .reg .pred p; mbarrier.try_wait.parity.acquire.cluster.shared::cta.b64 p, [%1], %2; selp.u32 %0, 1, 0, p; }" : "=r"(ok) : "r"(a), "r"(par) : "memory");
}
__global__ void stream_mc(const char* src, size_t per_cta, int slots, uint64_t* rec) {
  extern __shared__ __align__(1024) char smem[];
  __shared__ uint64_t full[32], empty[32];
  uint32_t rank, C;
  asm volatile("mov.u32 %0, %%cluster_ctarank;" : "=r"(rank));
  asm volatile("mov.u32 %0, %%cluster_nctarank;" : "=r"(C));
  const int b = blockIdx.x, lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  const char* base = src + per_cta * (b / C);
  const int n = int(per_cta / kChunk);
  if (threadIdx.x == 0) {
    for (int i = 0; i < slots; ++i) {
      asm volatile("mbarrier.init.shared::cta.b64 [%0], 1;" :: "r"(uint32_t(__cvta_generic_to_shared(&full[i]))));
      asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;" :: "r"(uint32_t(__cvta_generic_to_shared(&empty[i]))), "r"(C));
      asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;" :: "r"(uint32_t(__cvta_generic_to_shared(&full[i]))), "r"(kChunk));
    }
    asm volatile("fence.mbarrier_init.release.cluster;");
  }
  __syncthreads();
  asm volatile("barrier.cluster.arrive.aligned; barrier.cluster.wait.aligned;" ::: "memory");
  uint64_t t0 = gtime();
  if (warp == 1 && lane == 0) {  // issuer
    const uint16_t mask = uint16_t((1u << C) - 1);
    for (int i = int(rank); i < n; i += int(C)) {
      const int s = i % slots;
      if (i >= slots) wait_bar(&empty[s], ((i / slots) - 1) & 1);
      uint32_t a = uint32_t(__cvta_generic_to_shared(&full[s]));
      uint32_t d = uint32_t(__cvta_generic_to_shared(smem + s * kChunk));
      asm volatile("cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes.multicast::cluster [%0], [%1], %2, [%3], %4;"
                   :: "r"(d), "l"(base + size_t(i) * kChunk), "r"(kChunk), "r"(a), "h"(mask) : "memory");
    }
  }
  if (warp == 0 && lane == 0) {  // consumer
    uint32_t acc = 0;
    for (int i = 0; i < n; ++i) {
      const int s = i % slots;
      wait_bar(&full[s], (i / slots) & 1);
      acc += *reinterpret_cast<volatile uint32_t*>(smem + s * kChunk);
      if (i + slots < n) {
        uint32_t local = uint32_t(__cvta_generic_to_shared(&empty[s])), remote;
        asm volatile("mapa.shared::cluster.u32 %0, %1, %2;" : "=r"(remote) : "r"(local), "r"(uint32_t(s % C)));
        asm volatile("mbarrier.arrive.release.cluster.shared::cluster.b64 _, [%0];" :: "r"(remote) : "memory");
        asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;" :: "r"(uint32_t(__cvta_generic_to_shared(&full[s]))), "r"(kChunk));
      }
    }
    rec[2 * b + 1] = gtime() + (acc == 12345u);
    rec[2 * b] = t0;
  }
  __syncwarp();
  __syncthreads();
  asm volatile("barrier.cluster.arrive.aligned; barrier.cluster.wait.aligned;" ::: "memory");
}

int main() {
  setvbuf(stdout, nullptr, _IONBF, 0);
  cudaDeviceProp prop; CK(cudaGetDeviceProperties(&prop, 0));
  const int nsm = prop.multiProcessorCount, smem = 200 * 1024;
  CK(cudaFuncSetAttribute(stream, cudaFuncAttributeMaxDynamicSharedMemorySize, smem));
  const size_t per = 4608 * 1024;
  char* src; CK(cudaMalloc(&src, per * nsm)); CK(cudaMemset(src, 1, per * nsm));
  uint64_t* rec; CK(cudaMalloc(&rec, nsm * 16));
  printf("%s, %d SMs, %zu KiB per CTA; delivered = bytes landed in shared memory, all CTAs\n", prop.name, nsm, per >> 10);
  printf("%-6s %-8s %-6s %10s %12s %12s %16s\n", "share", "layout", "slots", "span_us", "deliv_TB/s", "unique_TB/s", "TFLOPS_bound");
  for (int slots : {18, 24}) for (int share : {1, 2, 4, 132}) for (int strided : {0, 1}) {
    if ((share == 1 || share == 132) && strided) continue;
    std::vector<double> spans;
    for (int r = 0; r < 5; ++r) {
      stream<<<nsm, 128, smem>>>(src, per, share, strided, slots, rec); CK(cudaDeviceSynchronize());
      std::vector<uint64_t> h(2 * nsm); CK(cudaMemcpy(h.data(), rec, h.size() * 8, cudaMemcpyDeviceToHost));
      uint64_t t0 = ~0ull, t1 = 0; for (int b = 0; b < nsm; ++b) { t0 = std::min(t0, h[2 * b]); t1 = std::max(t1, h[2 * b + 1]); }
      if (r > 0) spans.push_back((t1 - t0) * 1e-3);
    }
    std::sort(spans.begin(), spans.end()); double us = spans[spans.size() / 2];
    double deliv = double(per) * nsm / (us * 1e6), uniq = deliv / std::min(share, nsm);
    printf("%-6d %-8s %-6d %10.1f %12.2f %12.2f %16.0f\n", share, strided ? "strided" : "adjacent", slots, us, deliv, uniq, deliv * 120.9);
  }
  CK(cudaFuncSetAttribute(stream_mc, cudaFuncAttributeMaxDynamicSharedMemorySize, smem));
  for (int slots : {24, 18}) for (int C : {2, 4}) {
    if (C == 4 && slots % 4) continue;
    std::vector<double> spans; int g = 0;
    for (int r = 0; r < 5; ++r) {
      cudaLaunchConfig_t cfg = {}; cudaLaunchAttribute at[1];
      at[0].id = cudaLaunchAttributeClusterDimension; at[0].val.clusterDim.x = C; at[0].val.clusterDim.y = 1; at[0].val.clusterDim.z = 1;
      cfg.attrs = at; cfg.numAttrs = 1; cfg.blockDim = dim3(64); cfg.dynamicSmemBytes = smem; cfg.gridDim = dim3(C); int ncl = 0; CK(cudaOccupancyMaxActiveClusters(&ncl, stream_mc, &cfg)); ncl = std::min(ncl, nsm / C); cfg.gridDim = dim3(ncl * C); g = ncl * C;
      CK(cudaLaunchKernelEx(&cfg, stream_mc, (const char*)src, per, slots, rec));
      auto tstart = std::chrono::steady_clock::now();
      while (cudaStreamQuery(0) == cudaErrorNotReady) {
        if (std::chrono::steady_clock::now() - tstart > std::chrono::seconds(3)) {
          printf("cluster %d, %d slots: did not finish in 3 s\n", C, slots);
          _exit(1);  // the kernel cannot be stopped; leaving the process ends it
        }
      }
      CK(cudaGetLastError());
      std::vector<uint64_t> h(2 * g); CK(cudaMemcpy(h.data(), rec, h.size() * 8, cudaMemcpyDeviceToHost));
      uint64_t t0 = ~0ull, t1 = 0; for (int b = 0; b < g; ++b) { t0 = std::min(t0, h[2 * b]); t1 = std::max(t1, h[2 * b + 1]); }
      if (r > 0) spans.push_back((t1 - t0) * 1e-3);
    }
    std::sort(spans.begin(), spans.end()); double us = spans[spans.size() / 2];
    double deliv = double(per) * g / (us * 1e6), uniq = deliv / C;
    printf("%d CTAs ", g); printf("%-6d %-8s %-6d %10.1f %12.2f %12.2f %16.0f\n", C, "mcast", slots, us, deliv, uniq, deliv * 120.9);
  }
  return 0;
}
