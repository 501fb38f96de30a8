// Probe: bytes per second landed in shared memory, one CTA per SM, 4.5 MiB per region in 8 KiB
// loads through a ring of `slots` mbarrier-completed slots, by
//   load kind:  1-D bulk copy ("bulk"), 2-D tensor box of 64 x 64 bf16 ("t2"), or the 4-D box
//               of a 64 x 576 page exactly as the decode kernels load KV ("t4": 9 boxes a page);
//   protocol:   p0, one thread issues and consumes (refills a slot once it has read it); p1, a
//               separate issuer warp waits on `empty` barriers that the consumer (and, with
//               xN, N more waiting warps, like consumer warps) arrive on;
//   wait:       try (the library's try_wait loop), clw (try_wait.acquire.cluster), testc
//               (test_wait.acquire.cluster spin), hint (try_wait with a 1 ms suspend-time
//               hint), sl32 (try_wait, then __nanosleep(32));
//   multicast:  mc, a cluster of `share` CTAs reads one region, box i issued by rank i % share
//               into all of them; mc-self, each CTA multicasts only to itself.
// `share` CTAs (neighbours in block order) read each region. The SM clock of each row is
// measured (clock64 against %globaltimer). See docs/perf-notes.md, "Load probes, re-run": the
// rates with share > 1 depend on the build, not only on the configuration.
//
// Build and run on the device, from the repository root: nvcc -O2 -std=c++17
//   -gencode arch=compute_90a,code=sm_90a -Isrc bench/probes/load_modes.cu -o load_modes
//   && ./load_modes
#include <cuda.h>
#include <cudaTypedefs.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <vector>

#include "bulk_stream.cuh"

#define CK PROBE_CHECK
namespace ptx = flash_mla::ptx;
constexpr int kBox = 8192;

enum Kind { kBulk, kT2, kT4 };
enum Cluster { kNone, kMc, kMcSelf };
enum Wait { kTry, kTryCluster, kTestCluster, kHint, kSleep32 };

// One poll of `bar`'s phase `parity` (PTX ISA: "mbarrier.test_wait/try_wait"), by wait style.
template <Wait kW>
__device__ __forceinline__ bool poll(uint64_t* bar, uint32_t parity) {
  uint32_t done;
  if constexpr (kW == kTryCluster) {
    asm volatile(
        "{ .reg .pred p; mbarrier.try_wait.parity.acquire.cluster.shared::cta.b64 p, [%1], %2;"
        " selp.u32 %0, 1, 0, p; }"
        : "=r"(done) : "r"(ptx::smem_addr(bar)), "r"(parity) : "memory");
  } else if constexpr (kW == kTestCluster) {
    asm volatile(
        "{ .reg .pred p; mbarrier.test_wait.parity.acquire.cluster.shared::cta.b64 p, [%1], %2;"
        " selp.u32 %0, 1, 0, p; }"
        : "=r"(done) : "r"(ptx::smem_addr(bar)), "r"(parity) : "memory");
  } else if constexpr (kW == kHint) {  // may suspend up to 1 ms unless the phase completes
    asm volatile(
        "{ .reg .pred p; mbarrier.try_wait.parity.shared::cta.b64 p, [%1], %2, %3;"
        " selp.u32 %0, 1, 0, p; }"
        : "=r"(done) : "r"(ptx::smem_addr(bar)), "r"(parity), "r"(1000000) : "memory");
  } else {
    asm volatile(
        "{ .reg .pred p; mbarrier.try_wait.parity.shared::cta.b64 p, [%1], %2;"
        " selp.u32 %0, 1, 0, p; }"
        : "=r"(done) : "r"(ptx::smem_addr(bar)), "r"(parity) : "memory");
  }
  return done != 0;
}
__device__ __forceinline__ void wait_k(int w, uint64_t* bar, uint32_t parity) {
  switch (w) {
    case kTry: ptx::mbarrier_wait(bar, parity); break;  // the library's loop
    case kTryCluster: while (!poll<kTryCluster>(bar, parity)) {} break;
    case kTestCluster: while (!poll<kTestCluster>(bar, parity)) {} break;
    case kHint: while (!poll<kHint>(bar, parity)) {} break;
    default: while (!poll<kSleep32>(bar, parity)) __nanosleep(32); break;
  }
}

__device__ __forceinline__ void load(int kind, int hint, uint16_t mask, const CUtensorMap* map,
                                     const char* src, char* dst, uint64_t* bar, int region,
                                     int i, int boxes_per_region) {
  const uint64_t pol = ptx::evict_first_policy();
  const uint32_t d = ptx::smem_addr(dst), a = ptx::smem_addr(bar);
  if (kind == kBulk) {
    const char* g = src + (size_t(region) * boxes_per_region + i) * kBox;
    if (mask) {
      asm volatile(
          "cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes.multicast::cluster"
          " [%0], [%1], %2, [%3], %4;" :: "r"(d), "l"(g), "r"(kBox), "r"(a), "h"(mask) : "memory");
    } else if (hint) {
      asm volatile(
          "cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes.L2::cache_hint"
          " [%0], [%1], %2, [%3], %4;" :: "r"(d), "l"(g), "r"(kBox), "r"(a), "l"(pol) : "memory");
    } else {
      asm volatile(
          "cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1], %2, [%3];"
          :: "r"(d), "l"(g), "r"(kBox), "r"(a) : "memory");
    }
    return;
  }
  int c0, c1, c2 = 0, c3 = 0;
  if (kind == kT2) {
    c0 = 0;
    c1 = (region * boxes_per_region + i) * 64;
  } else {
    c0 = (i % 9) * 64;
    c1 = 0;
    c3 = region * (boxes_per_region / 9) + i / 9;
  }
  if (mask) {
    asm volatile(
        "cp.async.bulk.tensor.4d.shared::cluster.global.tile.mbarrier::complete_tx::bytes"
        ".multicast::cluster.L2::cache_hint [%0], [%1, {%2, %3, %4, %5}], [%6], %7, %8;"
        :: "r"(d), "l"(map), "r"(c0), "r"(c1), "r"(c2), "r"(c3), "r"(a), "h"(mask), "l"(pol)
        : "memory");
  } else if (hint) {
    asm volatile(
        "cp.async.bulk.tensor.4d.shared::cluster.global.tile.mbarrier::complete_tx::bytes"
        ".L2::cache_hint [%0], [%1, {%2, %3, %4, %5}], [%6], %7;"
        :: "r"(d), "l"(map), "r"(c0), "r"(c1), "r"(c2), "r"(c3), "r"(a), "l"(pol) : "memory");
  } else {
    asm volatile(
        "cp.async.bulk.tensor.4d.shared::cluster.global.tile.mbarrier::complete_tx::bytes"
        " [%0], [%1, {%2, %3, %4, %5}], [%6];"
        :: "r"(d), "l"(map), "r"(c0), "r"(c1), "r"(c2), "r"(c3), "r"(a) : "memory");
  }
}

// proto 0: one thread issues and consumes (refill after read). proto 1: warp 1 issues (waits on
// `empty`), warp 0 consumes. Cluster modes always use proto 1.
__global__ void stream(const __grid_constant__ CUtensorMap map, const char* src, int kind,
                       int hint, int clu, int proto, int waitk, int extra, int share, int slots,
                       int n, uint64_t* rec) {
  extern __shared__ char smem_raw[];
  char* smem = reinterpret_cast<char*>((reinterpret_cast<uintptr_t>(smem_raw) + 1023) &
                                       ~uintptr_t(1023));
  __shared__ uint64_t full[32], empty[32];
  uint32_t rank = 0, C = 1;
  if (clu != kNone) {
    asm volatile("mov.u32 %0, %%cluster_ctarank;" : "=r"(rank));
    asm volatile("mov.u32 %0, %%cluster_nctarank;" : "=r"(C));
  }
  const uint32_t Cb = clu == kMc ? C : 1;  // CTAs whose consumers free a slot of one issuer
  const int b = blockIdx.x, lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  const int region = clu != kNone ? b / int(C) : b / share;
  if (threadIdx.x == 0) {
    for (int i = 0; i < slots; ++i) {
      ptx::mbarrier_init(&full[i], 1);
      ptx::mbarrier_init(&empty[i], Cb + extra);
      if (proto == 1 || clu != kNone) ptx::mbarrier_arrive_expect_tx(&full[i], kBox);
    }
    ptx::fence_mbarrier_init();
  }
  __syncthreads();
  if (clu != kNone) asm volatile("barrier.cluster.arrive.aligned; barrier.cluster.wait.aligned;");
  const uint64_t t0 = probe::globaltimer();
  const uint64_t k0 = clock64();
  uint32_t sum = 0;
  if (proto == 0 && clu == kNone) {
    if (threadIdx.x == 0) {
      for (int i = 0; i < slots && i < n; ++i) {
        ptx::mbarrier_arrive_expect_tx(&full[i], kBox);
        load(kind, hint, 0, &map, src, smem + i * kBox, &full[i], region, i, n);
      }
      for (int i = 0; i < n; ++i) {
        const int s = i % slots;
        wait_k(waitk, &full[s], (i / slots) & 1);
        sum += *reinterpret_cast<volatile uint32_t*>(smem + s * kBox);
        if (i + slots < n) {
          ptx::mbarrier_arrive_expect_tx(&full[s], kBox);
          load(kind, hint, 0, &map, src, smem + s * kBox, &full[s], region, i + slots, n);
        }
      }
    }
  } else {
    if (warp == 1 && lane == 0) {
      const int step = clu == kMc ? int(C) : 1, first = clu == kMc ? int(rank) : 0;
      const uint16_t mask = clu == kMc ? uint16_t((1u << C) - 1)
                                       : clu == kMcSelf ? uint16_t(1u << rank) : uint16_t(0);
      for (int i = first; i < n; i += step) {
        const int s = i % slots;
        if (i >= slots) wait_k(waitk, &empty[s], ((i / slots) - 1) & 1);
        load(kind, hint, mask, &map, src, smem + s * kBox, &full[s], region, i, n);
      }
    }
    if (warp >= 2 && lane == 0 && warp < 2 + extra) {  // extra waiters, as consumer warps
      for (int i = 0; i < n; ++i) {
        const int s = i % slots;
        wait_k(waitk, &full[s], (i / slots) & 1);
        if (i + slots < n) ptx::mbarrier_arrive(&empty[s]);
      }
    }
    if (warp == 0 && lane == 0) {
      for (int i = 0; i < n; ++i) {
        const int s = i % slots;
        wait_k(waitk, &full[s], (i / slots) & 1);
        sum += *reinterpret_cast<volatile uint32_t*>(smem + s * kBox);
        if (i + slots < n) {
          ptx::mbarrier_arrive_expect_tx(&full[s], kBox);
          if (clu == kMc) {
            uint32_t remote;
            asm volatile("mapa.shared::cluster.u32 %0, %1, %2;"
                         : "=r"(remote) : "r"(ptx::smem_addr(&empty[s])), "r"(uint32_t(s % C)));
            asm volatile("mbarrier.arrive.release.cluster.shared::cluster.b64 _, [%0];"
                         :: "r"(remote) : "memory");
          } else {
            ptx::mbarrier_arrive(&empty[s]);
          }
        }
      }
    }
  }
  if (threadIdx.x == 0) {
    rec[4 * b] = t0;
    rec[4 * b + 2] = k0;
  }
  if (warp == 0 && lane == 0) {  // the consumer of every protocol is thread 0
    rec[4 * b + 1] = probe::globaltimer() + (sum == 12345u);
    rec[4 * b + 3] = clock64();
  }
  __syncthreads();
  if (clu != kNone) asm volatile("barrier.cluster.arrive.aligned; barrier.cluster.wait.aligned;");
}

__global__ void spin(uint64_t ns) {
  const uint64_t t = probe::globaltimer();
  while (probe::globaltimer() - t < ns) {
  }
}

int main() {
  setvbuf(stdout, nullptr, _IONBF, 0);
  cudaDeviceProp prop;
  CK(cudaGetDeviceProperties(&prop, 0));
  const int nsm = prop.multiProcessorCount, smem = 200 * 1024;
  CK(cudaFuncSetAttribute(stream, cudaFuncAttributeMaxDynamicSharedMemorySize, smem));
  const int n = 576;  // boxes per region: 4.5 MiB, 64 pages of 64 x 576 bf16
  const size_t per = size_t(n) * kBox;
  char* src = probe::filled_buffer(per * nsm);
  uint64_t* rec;
  CK(cudaMalloc(&rec, nsm * 32));
  void* fn = nullptr;
  cudaDriverEntryPointQueryResult q;
  CK(cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", &fn, 12000, cudaEnableDefault,
                                      &q));
  auto encode = reinterpret_cast<PFN_cuTensorMapEncodeTiled_v12000>(fn);
  // t2: rows of 128 bytes, boxes of 64 rows. t4: pages of 64 tokens x 576 channels, boxes of
  // 64 x 64 as in kernels/sm90/decode_launch.cuh (one KV head).
  auto make = [&](int kind) {
    const cuuint64_t rows = cuuint64_t(n) * 64 * nsm, pages = cuuint64_t(n / 9) * nsm;
    const cuuint64_t t2_dims[4] = {64, rows, 1, 1}, t2_strides[3] = {128, 128 * rows, 128 * rows};
    const cuuint64_t t4_dims[4] = {576, 64, 1, pages}, t4_strides[3] = {1152, 73728, 73728};
    const cuuint32_t box[4] = {64, 64, 1, 1}, es[4] = {1, 1, 1, 1};
    CUtensorMap m;
    const CUresult r = encode(&m, CU_TENSOR_MAP_DATA_TYPE_BFLOAT16, 4, src,
                              kind == kT2 ? t2_dims : t4_dims,
                              kind == kT2 ? t2_strides : t4_strides, box, es,
                              CU_TENSOR_MAP_INTERLEAVE_NONE, CU_TENSOR_MAP_SWIZZLE_128B,
                              CU_TENSOR_MAP_L2_PROMOTION_L2_256B,
                              CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
    if (r != CUDA_SUCCESS) {
      printf("encode failed %d\n", int(r));
      exit(1);
    }
    return m;
  };
  struct Row {
    const char* name;
    int kind, hint, clu, proto, waitk, slots, extra;
  };
  const Row rows[] = {
      {"bulk p0 try", kBulk, 1, kNone, 0, kTry, 18, 0},
      {"bulk p0 clw", kBulk, 1, kNone, 0, kTryCluster, 18, 0},
      {"t2 p0 try", kT2, 1, kNone, 0, kTry, 18, 0},
      {"t4 p0 try", kT4, 1, kNone, 0, kTry, 18, 0},
      {"t4 p0 hint", kT4, 1, kNone, 0, kHint, 18, 0},
      {"t4 p0 sl32", kT4, 1, kNone, 0, kSleep32, 18, 0},
      {"t4 p1 try", kT4, 1, kNone, 1, kTry, 18, 0},
      {"t4 p1 clw", kT4, 1, kNone, 1, kTryCluster, 18, 0},
      {"t4 p1 try x8", kT4, 1, kNone, 1, kTry, 18, 8},
      {"t4 mc clw", kT4, 1, kMc, 1, kTryCluster, 16, 0},
      {"t4 mc testc", kT4, 1, kMc, 1, kTestCluster, 16, 0},
      {"t4 mc-self", kT4, 1, kMcSelf, 1, kTestCluster, 16, 0},
      {"bulk mc testc", kBulk, 1, kMc, 1, kTestCluster, 16, 0},
  };
  spin<<<nsm, 32>>>(300000000ull);
  CK(cudaDeviceSynchronize());
  printf("%s, %d SMs; 8 KiB loads, 4.5 MiB per region, one CTA per SM; two passes\n",
         prop.name, nsm);
  printf("%-16s %-5s %-5s %9s %11s %8s\n", "mode", "share", "slots", "span_us", "deliv_TB/s",
         "SM_MHz");
  for (int pass = 0; pass < 2; ++pass)  // the second pass: is a row stable within a run?
    for (const Row& r : rows)
      for (int share : {1, 2, 4}) {
        if (r.clu != kNone && share == 1) continue;
        if (pass > 0 && r.clu != kNone) continue;
        CUtensorMap m = make(r.kind == kBulk ? kT2 : r.kind);
        std::vector<double> spans, mhz;
        int g = nsm;
        for (int rep = 0; rep < 5; ++rep) {
          cudaLaunchAttribute attr;
          cudaLaunchConfig_t cfg = probe::cluster_config(r.clu != kNone ? share : 1, dim3(nsm),
                                                         dim3(64 + 32 * r.extra), smem, attr);
          if (r.clu != kNone) {
            cfg.gridDim = dim3(share);
            int ncl = 0;
            CK(cudaOccupancyMaxActiveClusters(&ncl, stream, &cfg));
            g = std::min(ncl, nsm / share) * share;
            cfg.gridDim = dim3(g);
          }
          CK(cudaLaunchKernelEx(&cfg, stream, m, (const char*)src, r.kind, r.hint, r.clu,
                                r.proto, r.waitk, r.extra, share, r.slots, n, rec));
          auto t = std::chrono::steady_clock::now();
          while (cudaStreamQuery(0) == cudaErrorNotReady) {
            if (std::chrono::steady_clock::now() - t > std::chrono::seconds(3)) {
              printf("%s share %d: did not finish\n", r.name, share);
              _exit(1);
            }
          }
          CK(cudaGetLastError());
          std::vector<uint64_t> h(4 * size_t(g));
          CK(cudaMemcpy(h.data(), rec, h.size() * 8, cudaMemcpyDeviceToHost));
          uint64_t t0 = ~0ull, t1 = 0;
          std::vector<double> f;
          for (int k = 0; k < g; ++k) {
            t0 = std::min(t0, h[4 * k]);
            t1 = std::max(t1, h[4 * k + 1]);
            const double cycles = double(h[4 * k + 3] - h[4 * k + 2]);
            f.push_back(cycles * 1e3 / double(h[4 * k + 1] - h[4 * k]));  // MHz
          }
          if (rep > 0) {
            spans.push_back((t1 - t0) * 1e-3);
            mhz.push_back(probe::median(f));
          }
        }
        const double us = probe::median(spans);
        printf("%-16s %-5d %-5d %9.1f %11.2f %8.0f%s\n", r.name, share, r.slots, us,
               double(per) * g / (us * 1e6), probe::median(mhz),
               g != nsm ? " (fewer CTAs: clusters that fit)" : "");
      }
  return 0;
}
