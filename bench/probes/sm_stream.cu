// Probe: does every SM stream from memory at the same rate? With equal work per CTA the
// decode kernels' CTAs end several µs apart; this measures the memory system alone.
//
// 1. SM groups: clusters run inside one GPC, so the SMs that clusters of 2..16 CTAs share
//    (union-find over several launches) approximate the GPCs.
// 2. The blockIdx -> %smid mapping of a plain one-CTA-per-SM grid, over four launches.
// 3. 132 CTAs (one per SM, 200 KiB of shared memory) each stream 4.5 MiB with 16 KiB bulk
//    copies (PTX ISA "cp.async.bulk") through 12 slots; per CTA its end time and SM. Then
//    half of the CTAs only (the first half, the even ones).
//
// Build and run on the device, from the repository root: nvcc -O2 -std=c++17
//   -gencode arch=compute_90a,code=sm_90a -Isrc bench/probes/sm_stream.cu -o sm_stream &&
//   ./sm_stream
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <map>
#include <numeric>
#include <vector>

#include "bulk_stream.cuh"

#define CK PROBE_CHECK
using probe::smid;

__global__ void where(int* out) {
  extern __shared__ char s[];
  if (threadIdx.x == 0) {
    out[blockIdx.x] = smid();
    s[0] = 0;
  }
}

constexpr int kSlots = 12, kChunk = 16384;
__global__ void stream(const char* src, size_t per_cta, const int* active, uint64_t* rec) {
  extern __shared__ __align__(1024) char smem[];
  __shared__ uint64_t bar[kSlots];
  const int b = blockIdx.x;
  if (!active[b]) {
    if (threadIdx.x == 0) {
      rec[4 * b] = 0;
      rec[4 * b + 1] = 0;
      rec[4 * b + 2] = smid();
    }
    return;
  }
  if (threadIdx.x != 0) return;
  const uint64_t t0 = probe::globaltimer();
  const uint32_t sum = probe::stream_through_ring<false>(smem, bar, kSlots, kChunk,
                                                         src + per_cta * b, int(per_cta / kChunk));
  const uint64_t t1 = probe::globaltimer();
  rec[4 * b] = t0;
  rec[4 * b + 1] = t1;
  rec[4 * b + 2] = smid();
  rec[4 * b + 3] = sum;
}

int find(std::vector<int>& p, int x) {
  while (p[x] != x) x = p[x] = p[p[x]];
  return x;
}

int main() {
  int dev = 0;
  cudaDeviceProp prop;
  CK(cudaGetDeviceProperties(&prop, dev));
  const int nsm = prop.multiProcessorCount;
  const int smem = 200 * 1024;
  printf("%s, %d SMs\n", prop.name, nsm);
  CK(cudaFuncSetAttribute(where, cudaFuncAttributeMaxDynamicSharedMemorySize, smem));
  CK(cudaFuncSetAttribute(where, cudaFuncAttributeNonPortableClusterSizeAllowed, 1));
  CK(cudaFuncSetAttribute(stream, cudaFuncAttributeMaxDynamicSharedMemorySize, smem));
  int* d_out;
  CK(cudaMalloc(&d_out, 4096 * 4));
  // 1) GPC groups from clusters (a cluster runs inside one GPC)
  std::vector<int> par(nsm);
  std::iota(par.begin(), par.end(), 0);
  for (int X : {16, 14, 12, 10, 9, 8, 6, 4, 2}) {
    cudaLaunchAttribute attr;
    cudaLaunchConfig_t cfg = probe::cluster_config(X, dim3(X), dim3(128), smem, attr);
    int nc = 0;
    if (cudaOccupancyMaxActiveClusters(&nc, where, &cfg) != cudaSuccess || nc == 0) {
      cudaGetLastError();
      printf("cluster %d: none\n", X);
      continue;
    }
    cfg.gridDim = dim3(nc * X);
    for (int rep = 0; rep < 3; ++rep) {
      if (cudaLaunchKernelEx(&cfg, where, d_out) != cudaSuccess) {
        cudaGetLastError();
        printf("cluster %d launch failed\n", X);
        break;
      }
      CK(cudaDeviceSynchronize());
      std::vector<int> h(nc * X);
      CK(cudaMemcpy(h.data(), d_out, h.size() * 4, cudaMemcpyDeviceToHost));
      for (int c = 0; c < nc; ++c)
        for (int k = 1; k < X; ++k) par[find(par, h[c * X + k])] = find(par, h[c * X]);
    }
    printf("cluster %2d: %d active clusters\n", X, nc);
  }
  std::map<int, std::vector<int>> groups;
  for (int s = 0; s < nsm; ++s) groups[find(par, s)].push_back(s);
  std::vector<int> gid(nsm);           // SM -> group
  std::vector<size_t> group_size;      // group -> SMs
  int gi = 0;
  for (auto& [r, v] : groups) {
    printf("group %d (%zu SMs):", gi, v.size());
    group_size.push_back(v.size());
    for (int s : v) {
      printf(" %d", s);
      gid[s] = gi;
    }
    printf("\n");
    ++gi;
  }
  // 2) first-wave mapping of a plain 132-CTA grid
  std::vector<int> m0;
  for (int rep = 0; rep < 4; ++rep) {
    where<<<nsm, 128, smem>>>(d_out);
    CK(cudaDeviceSynchronize());
    std::vector<int> h(nsm);
    CK(cudaMemcpy(h.data(), d_out, nsm * 4, cudaMemcpyDeviceToHost));
    if (rep == 0) {
      m0 = h;
      printf("blockIdx->smid:");
      for (int i = 0; i < nsm; ++i) printf(" %d", h[i]);
      printf("\n");
    } else
      printf("rep %d same mapping: %s\n", rep, h == m0 ? "yes" : "no");
  }
  // 3) streaming, 4.5 MiB per CTA
  const size_t per = 4608 * 1024;
  char* src = probe::filled_buffer(per * nsm);
  int* d_act;
  CK(cudaMalloc(&d_act, nsm * 4));
  uint64_t* d_rec;
  CK(cudaMalloc(&d_rec, nsm * 32));
  auto run = [&](const char* name, std::vector<int> act, int reps) {
    CK(cudaMemcpy(d_act, act.data(), nsm * 4, cudaMemcpyHostToDevice));
    std::vector<std::vector<double>> dur(reps, std::vector<double>(nsm, 0));
    std::vector<std::vector<int>> sm(reps, std::vector<int>(nsm));
    std::vector<double> tot(reps);
    for (int r = 0; r < reps; ++r) {
      stream<<<nsm, 128, smem>>>(src, per, d_act, d_rec);
      CK(cudaDeviceSynchronize());
      std::vector<uint64_t> h(4 * nsm);
      CK(cudaMemcpy(h.data(), d_rec, h.size() * 8, cudaMemcpyDeviceToHost));
      uint64_t t0 = ~0ull, t1 = 0;
      for (int b = 0; b < nsm; ++b)
        if (act[b]) {
          t0 = std::min(t0, h[4 * b]);
          t1 = std::max(t1, h[4 * b + 1]);
        }
      for (int b = 0; b < nsm; ++b) {
        sm[r][b] = int(h[4 * b + 2]);
        if (act[b]) dur[r][b] = (h[4 * b + 1] - t0) * 1e-3;
      }
      tot[r] = (t1 - t0) * 1e-3;
    }
    int na = std::accumulate(act.begin(), act.end(), 0);
    printf("\n== %s: %d active, kernel span per rep (us):", name, na);
    for (double t : tot) printf(" %.1f", t);
    printf("  GB/s %.0f\n", na * per / (tot[reps - 1] * 1e3));
    // per group: active SMs, mean / max end time
    std::map<int, std::vector<double>> g;
    std::map<int, int> gact;
    for (int r = 0; r < reps; ++r)
      for (int b = 0; b < nsm; ++b)
        if (act[b]) {
          g[gid[sm[r][b]]].push_back(dur[r][b]);
          if (r == 0) gact[gid[sm[r][b]]]++;
        }
    for (auto& [k, v] : g) {
      double mn = std::accumulate(v.begin(), v.end(), 0.0) / v.size();
      double mx = *std::max_element(v.begin(), v.end());
      double lo = *std::min_element(v.begin(), v.end());
      printf("  group %d (size %zu, active %d): end mean %.1f min %.1f max %.1f\n", k,
             group_size[k], gact[k], mn, lo, mx);
    }
    // per-SM consistency between rep 0 and rep last
    std::vector<double> a(nsm, -1), c(nsm, -1);
    for (int b = 0; b < nsm; ++b)
      if (act[b]) {
        a[sm[0][b]] = dur[0][b];
        c[sm[reps - 1][b]] = dur[reps - 1][b];
      }
    double sa = 0, sc = 0, saa = 0, scc = 0, sac = 0;
    int k = 0;
    for (int s = 0; s < nsm; ++s)
      if (a[s] >= 0 && c[s] >= 0) {
        sa += a[s];
        sc += c[s];
        saa += a[s] * a[s];
        scc += c[s] * c[s];
        sac += a[s] * c[s];
        ++k;
      }
    double cov = sac / k - sa / k * sc / k, va = saa / k - sa / k * sa / k,
           vc = scc / k - sc / k * sc / k;
    printf("  per-SM end-time correlation, first vs last rep: %.2f (n=%d)\n", cov / sqrt(va * vc),
           k);
    std::vector<std::pair<double, int>> srt;
    for (int b = 0; b < nsm; ++b)
      if (act[b]) srt.push_back({dur[reps - 1][b], sm[reps - 1][b]});
    std::sort(srt.begin(), srt.end());
    printf("  last rep, slowest 12 (end us / smid / group):");
    for (int i = 0; i < 12 && i < (int)srt.size(); ++i) {
      auto& q = srt[srt.size() - 1 - i];
      printf(" %.1f/%d/%d", q.first, q.second, gid[q.second]);
    }
    printf("\n");
    printf("  last rep, fastest 6:");
    for (int i = 0; i < 6 && i < (int)srt.size(); ++i)
      printf(" %.1f/%d/%d", srt[i].first, srt[i].second, gid[srt[i].second]);
    printf("\n");
  };
  std::vector<int> all(nsm, 1), first(nsm, 0), even(nsm, 0);
  for (int b = 0; b < nsm; ++b) {
    first[b] = b < nsm / 2;
    even[b] = b % 2 == 0;
  }
  run("warm-up", all, 2);
  run("all", all, 6);
  run("first half", first, 4);
  run("even", even, 4);
  return 0;
}
