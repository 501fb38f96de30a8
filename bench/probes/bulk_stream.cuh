// What the memory-system probes (sm_stream.cu, l2_delivery.cu) share: one thread streaming a
// region of global memory through a ring of shared-memory slots by 1-D bulk copies, the way the
// decode kernels' TMA boxes arrive. The mbarriers are the library's (kernels/sm90/ptx_sm90.h).
#pragma once

#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <vector>

#include "kernels/sm90/ptx_sm90.h"

#define PROBE_CHECK(x)                                                                    \
  do {                                                                                    \
    cudaError_t e_ = (x);                                                                 \
    if (e_ != cudaSuccess) {                                                              \
      std::printf("%s:%d %s: %s\n", __FILE__, __LINE__, #x, cudaGetErrorString(e_));     \
      std::exit(1);                                                                       \
    }                                                                                     \
  } while (0)

namespace probe {

namespace ptx = flash_mla::ptx;

__device__ __forceinline__ uint32_t smid() {
  uint32_t r;
  asm volatile("mov.u32 %0, %%smid;" : "=r"(r));
  return r;
}

// Nanoseconds, comparable across SMs (PTX ISA: "Special Registers: %globaltimer").
__device__ __forceinline__ uint64_t globaltimer() {
  uint64_t r;
  asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(r));
  return r;
}

// `bytes` from global memory into this CTA's shared memory, completing on `bar`; with an L2
// evict_first policy when kEvictFirst, as the decode kernels load KV (PTX ISA: "cp.async.bulk").
template <bool kEvictFirst>
__device__ __forceinline__ void bulk_copy(void* smem, const void* gmem, uint32_t bytes,
                                          uint64_t* bar) {
  if constexpr (kEvictFirst) {
    asm volatile(
        "cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes.L2::cache_hint"
        " [%0], [%1], %2, [%3], %4;\n"
        :: "r"(ptx::smem_addr(smem)), "l"(gmem), "r"(bytes), "r"(ptx::smem_addr(bar)),
           "l"(ptx::evict_first_policy()) : "memory");
  } else {
    asm volatile(
        "cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1], %2, [%3];\n"
        :: "r"(ptx::smem_addr(smem)), "l"(gmem), "r"(bytes), "r"(ptx::smem_addr(bar)) : "memory");
  }
}

// Called by one thread: streams n chunks of `chunk` bytes from `src` through `slots` slots of
// `ring` (bars: one mbarrier per slot), each slot refilled as soon as its chunk has landed and
// been read. Returns a checksum of one word per chunk, so the loads are not dead.
template <bool kEvictFirst>
__device__ __forceinline__ uint32_t stream_through_ring(char* ring, uint64_t* bars, int slots,
                                                        uint32_t chunk, const char* src, int n) {
  for (int s = 0; s < slots; ++s) ptx::mbarrier_init(&bars[s], 1);
  ptx::fence_mbarrier_init();
  auto issue = [&](int i) {
    const int s = i % slots;
    ptx::mbarrier_arrive_expect_tx(&bars[s], chunk);
    bulk_copy<kEvictFirst>(ring + size_t(s) * chunk, src + size_t(i) * chunk, chunk, &bars[s]);
  };
  for (int i = 0; i < slots && i < n; ++i) issue(i);
  uint32_t sum = 0;
  for (int i = 0; i < n; ++i) {
    const int s = i % slots;
    ptx::mbarrier_wait(&bars[s], (i / slots) & 1);
    sum += *reinterpret_cast<volatile uint32_t*>(ring + size_t(s) * chunk);
    if (i + slots < n) issue(i + slots);
  }
  return sum;
}

// ---- host side

// A launch of clusters of `cluster_x` CTAs along x (grid x must be a multiple of it); `attr`
// holds the cluster shape and must outlive the returned configuration.
inline cudaLaunchConfig_t cluster_config(int cluster_x, dim3 grid, dim3 block, size_t smem,
                                         cudaLaunchAttribute& attr) {
  attr.id = cudaLaunchAttributeClusterDimension;
  attr.val.clusterDim.x = cluster_x;
  attr.val.clusterDim.y = 1;
  attr.val.clusterDim.z = 1;
  cudaLaunchConfig_t cfg = {};
  cfg.gridDim = grid;
  cfg.blockDim = block;
  cfg.dynamicSmemBytes = smem;
  cfg.attrs = &attr;
  cfg.numAttrs = 1;
  return cfg;
}

// µs from the earliest start to the latest end of `ctas` device records {start ns, end ns}.
inline double span_us(const uint64_t* d_rec, int ctas) {
  std::vector<uint64_t> h(2 * size_t(ctas));
  PROBE_CHECK(cudaMemcpy(h.data(), d_rec, h.size() * sizeof(uint64_t), cudaMemcpyDeviceToHost));
  uint64_t t0 = ~0ull, t1 = 0;
  for (int b = 0; b < ctas; ++b) {
    t0 = std::min(t0, h[2 * b]);
    t1 = std::max(t1, h[2 * b + 1]);
  }
  return (t1 - t0) * 1e-3;
}

// `bytes` of device memory, every byte 1: the region the probes stream.
inline char* filled_buffer(size_t bytes) {
  char* p = nullptr;
  PROBE_CHECK(cudaMalloc(&p, bytes));
  PROBE_CHECK(cudaMemset(p, 1, bytes));
  return p;
}

inline double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

}  // namespace probe
