// Probe: how many bytes per second the L2 can deliver into the SMs' shared memory, when each
// byte is read by `share` CTAs (the wide kernel's m-blocks each read every KV page: 2 CTAs at
// 128 rows, 4 at 256) and when clusters of C CTAs load each chunk once with `.multicast::cluster`.
//
// One CTA per SM (200 KiB of dynamic shared memory), 4.5 MiB per CTA in 8 KiB bulk copies
// (PTX ISA "cp.async.bulk") through a ring of `slots` chunks completed on mbarriers, as the
// decode kernels' TMA loads are. The wide kernel keeps 18 such chunks in flight (two pages).
// TFLOPS_bound = delivered bytes/s x 120.9: a 64-row CTA does 2 x 64 x 64 x (576 + 512) FLOP
// per 73,728-byte page it receives, so no per-CTA-load schedule of it can exceed that rate
// *at the delivery measured*. With share > 1 the delivery depends on the build (this source
// at 8605b86 measured 6.25 TB/s where the current one measures 8.2 on the same H100), so a
// row here is not a ceiling of the memory system (docs/perf-notes.md, "Load probes, re-run").
//
// Build and run on the device, from the repository root: nvcc -O2 -std=c++17
//   -gencode arch=compute_90a,code=sm_90a -Isrc bench/probes/l2_delivery.cu -o l2_delivery
//   && ./l2_delivery
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <vector>

#include "bulk_stream.cuh"

#define CK PROBE_CHECK
namespace ptx = flash_mla::ptx;

constexpr int kChunk = 8192;
// Each CTA streams its region itself; `share` CTAs read each region, neighbours in block order
// (region b / share) or `groups` blocks apart (strided: region b % groups).
__global__ void stream(const char* src, size_t per_cta, int share, int strided, int slots,
                       uint64_t* rec) {
  extern __shared__ __align__(1024) char smem[];
  __shared__ uint64_t bar[32];
  const int b = blockIdx.x;
  if (threadIdx.x != 0) return;
  const int groups = gridDim.x / share;
  const int region = strided ? b % groups : b / share;
  const uint64_t t0 = probe::globaltimer();
  const uint32_t sum = probe::stream_through_ring<true>(
      smem, bar, slots, kChunk, src + per_cta * region, int(per_cta / kChunk));
  const uint64_t t1 = probe::globaltimer();
  rec[2 * b] = t0;
  rec[2 * b + 1] = t1 + (sum == 12345u);
}

// Multicast: a cluster of C CTAs reads one region; chunk i is loaded by rank i % C into all C.
// Warp 0 consumes, warp 1 issues (waits for the slot to be free in every CTA of the cluster).
// The waits are cluster-scoped: `empty` collects arrivals from the other CTAs of the cluster.
__device__ __forceinline__ void wait_cluster(uint64_t* bar, uint32_t parity) {
  uint32_t done = 0;
  while (!done) {
    asm volatile(
        "{ .reg .pred p; mbarrier.try_wait.parity.acquire.cluster.shared::cta.b64 p, [%1], %2;"
        " selp.u32 %0, 1, 0, p; }"
        : "=r"(done)
        : "r"(ptx::smem_addr(bar)), "r"(parity)
        : "memory");
  }
}
// An arrival on the barrier at `bar`'s offset in cluster CTA `rank` (PTX ISA: "mapa",
// "mbarrier.arrive").
__device__ __forceinline__ void arrive_remote(uint64_t* bar, uint32_t rank) {
  uint32_t remote;
  asm volatile("mapa.shared::cluster.u32 %0, %1, %2;"
               : "=r"(remote)
               : "r"(ptx::smem_addr(bar)), "r"(rank));
  asm volatile("mbarrier.arrive.release.cluster.shared::cluster.b64 _, [%0];"
               :: "r"(remote) : "memory");
}
__device__ __forceinline__ void cluster_sync() {
  asm volatile("barrier.cluster.arrive.aligned; barrier.cluster.wait.aligned;" ::: "memory");
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
      ptx::mbarrier_init(&full[i], 1);
      ptx::mbarrier_init(&empty[i], C);
      ptx::mbarrier_arrive_expect_tx(&full[i], kChunk);
    }
    ptx::fence_mbarrier_init();
  }
  __syncthreads();
  cluster_sync();
  const uint64_t t0 = probe::globaltimer();
  if (warp == 1 && lane == 0) {  // issuer
    const uint16_t mask = uint16_t((1u << C) - 1);
    for (int i = int(rank); i < n; i += int(C)) {
      const int s = i % slots;
      if (i >= slots) wait_cluster(&empty[s], ((i / slots) - 1) & 1);
      // PTX ISA: "cp.async.bulk", .multicast::cluster: same offsets in every CTA of `mask`.
      asm volatile(
          "cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes.multicast::cluster"
          " [%0], [%1], %2, [%3], %4;"
          :: "r"(ptx::smem_addr(smem + s * kChunk)), "l"(base + size_t(i) * kChunk), "r"(kChunk),
             "r"(ptx::smem_addr(&full[s])), "h"(mask) : "memory");
    }
  }
  if (warp == 0 && lane == 0) {  // consumer
    uint32_t sum = 0;
    for (int i = 0; i < n; ++i) {
      const int s = i % slots;
      wait_cluster(&full[s], (i / slots) & 1);
      sum += *reinterpret_cast<volatile uint32_t*>(smem + s * kChunk);
      if (i + slots < n) {
        arrive_remote(&empty[s], uint32_t(s % C));  // slot s is free here; its issuer is rank s % C
        ptx::mbarrier_arrive_expect_tx(&full[s], kChunk);
      }
    }
    rec[2 * b] = t0;
    rec[2 * b + 1] = probe::globaltimer() + (sum == 12345u);
  }
  __syncthreads();
  cluster_sync();
}

int main() {
  setvbuf(stdout, nullptr, _IONBF, 0);
  cudaDeviceProp prop;
  CK(cudaGetDeviceProperties(&prop, 0));
  const int nsm = prop.multiProcessorCount, smem = 200 * 1024;
  CK(cudaFuncSetAttribute(stream, cudaFuncAttributeMaxDynamicSharedMemorySize, smem));
  const size_t per = 4608 * 1024;
  char* src = probe::filled_buffer(per * nsm);
  uint64_t* rec;
  CK(cudaMalloc(&rec, nsm * 16));
  printf("%s, %d SMs, %zu KiB per CTA; delivered = bytes landed in shared memory, all CTAs\n",
         prop.name, nsm, per >> 10);
  printf("%-6s %-8s %-6s %10s %12s %12s %16s\n", "share", "layout", "slots", "span_us",
         "deliv_TB/s", "unique_TB/s", "TFLOPS_bound");
  for (int slots : {18, 24})
    for (int share : {1, 2, 4, 132})
      for (int strided : {0, 1}) {
        if ((share == 1 || share == 132) && strided) continue;
        std::vector<double> spans;
        for (int r = 0; r < 5; ++r) {
          stream<<<nsm, 128, smem>>>(src, per, share, strided, slots, rec);
          CK(cudaDeviceSynchronize());
          if (r > 0) spans.push_back(probe::span_us(rec, nsm));  // the first run warms up
        }
        const double us = probe::median(spans);
        double deliv = double(per) * nsm / (us * 1e6), uniq = deliv / std::min(share, nsm);
        printf("%-6d %-8s %-6d %10.1f %12.2f %12.2f %16.0f\n", share,
               strided ? "strided" : "adjacent", slots, us, deliv, uniq, deliv * 120.9);
      }
  CK(cudaFuncSetAttribute(stream_mc, cudaFuncAttributeMaxDynamicSharedMemorySize, smem));
  for (int slots : {24, 18})
    for (int C : {2, 4}) {
      if (C == 4 && slots % 4) continue;
      std::vector<double> spans;
      int g = 0;
      for (int r = 0; r < 5; ++r) {
        cudaLaunchAttribute attr;
        cudaLaunchConfig_t cfg = probe::cluster_config(C, dim3(C), dim3(64), smem, attr);
        int ncl = 0;
        CK(cudaOccupancyMaxActiveClusters(&ncl, stream_mc, &cfg));
        ncl = std::min(ncl, nsm / C);
        cfg.gridDim = dim3(ncl * C);
        g = ncl * C;
        CK(cudaLaunchKernelEx(&cfg, stream_mc, (const char*)src, per, slots, rec));
        auto tstart = std::chrono::steady_clock::now();
        while (cudaStreamQuery(0) == cudaErrorNotReady) {
          if (std::chrono::steady_clock::now() - tstart > std::chrono::seconds(3)) {
            printf("cluster %d, %d slots: did not finish in 3 s\n", C, slots);
            _exit(1);  // the kernel cannot be stopped; leaving the process ends it
          }
        }
        CK(cudaGetLastError());
        if (r > 0) spans.push_back(probe::span_us(rec, g));
      }
      const double us = probe::median(spans);
      double deliv = double(per) * g / (us * 1e6), uniq = deliv / C;
      printf("%d CTAs ", g);
      printf("%-6d %-8s %-6d %10.1f %12.2f %12.2f %16.0f\n", C, "mcast", slots, us, deliv, uniq,
             deliv * 120.9);
    }
  return 0;
}
