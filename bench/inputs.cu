// Device-side inputs: hash-based random data, the paged KV pool with its shuffled block table,
// and the per-case q / out / lse buffers.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>

#include "bench_common.h"

namespace bench {
namespace {

using flash_mla::DType;

// Rotating copies never exceed this many: past it the problem is tiny and launch-bound anyway.
constexpr int kMaxCopies = 256;
// Copies are made until the bytes one rotation touches reach this multiple of the L2 size.
constexpr int64_t kL2Multiple = 4;

__host__ __device__ __forceinline__ uint64_t splitmix64(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

template <typename T>
__device__ __forceinline__ T from_float(float x);
template <>
__device__ __forceinline__ __nv_bfloat16 from_float<__nv_bfloat16>(float x) {
  return __float2bfloat16_rn(x);
}
template <>
__device__ __forceinline__ __half from_float<__half>(float x) {
  return __float2half_rn(x);
}

// Box-Muller on two 32-bit halves of one hash: a standard normal per element, never zero
// in bulk, and a pure function of (seed, index) so any element can be regenerated.
template <typename T>
__global__ void fill_random_kernel(T* __restrict__ data, int64_t n, uint64_t seed, float stddev) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t idx = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; idx < n;
       idx += stride) {
    const uint64_t h = splitmix64(seed ^ splitmix64(static_cast<uint64_t>(idx)));
    const float u1 = (static_cast<float>(h >> 40) + 1.0f) * (1.0f / 16777217.0f);  // (0, 1]
    const float u2 = static_cast<float>((h >> 16) & 0xFFFFFF) * (1.0f / 16777216.0f);
    const float z = sqrtf(-2.0f * logf(u1)) * cospif(2.0f * u2);
    data[idx] = from_float<T>(stddev * z);
  }
}

// Reads the global nanosecond timer (PTX ISA, "Special Registers: %globaltimer").
__device__ __forceinline__ uint64_t global_timer_ns() {
  uint64_t t;
  asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
  return t;
}

__global__ void spin_kernel(uint64_t ns) {
  const uint64_t start = global_timer_ns();
  while (global_timer_ns() - start < ns) __nanosleep(1000);
}

int64_t dtype_bytes(DType) { return 2; }

template <typename T>
T* device_alloc(int64_t count) {
  void* p = nullptr;
  BENCH_CUDA_CHECK(cudaMalloc(&p, static_cast<size_t>(std::max<int64_t>(count, 1)) * sizeof(T)));
  return static_cast<T*>(p);
}

void device_free(void* p) {
  if (p != nullptr) BENCH_CUDA_CHECK(cudaFree(p));
}

}  // namespace

void fill_random(void* data, DType dtype, int64_t n, uint64_t seed, float stddev,
                 cudaStream_t stream) {
  if (n <= 0) return;
  constexpr int kThreads = 256;
  const int blocks = static_cast<int>(std::min<int64_t>((n + kThreads - 1) / kThreads, 65536));
  if (dtype == DType::kBF16)
    fill_random_kernel<<<blocks, kThreads, 0, stream>>>(static_cast<__nv_bfloat16*>(data), n, seed,
                                                        stddev);
  else
    fill_random_kernel<<<blocks, kThreads, 0, stream>>>(static_cast<__half*>(data), n, seed, stddev);
  BENCH_LAUNCH_CHECK();
}

void gpu_spin(uint64_t ns, cudaStream_t stream) {
  spin_kernel<<<1, 1, 0, stream>>>(ns);
  BENCH_LAUNCH_CHECK();
}

namespace {

// SM clock ticks and global-timer nanoseconds of the last clock_kernel run.
__device__ unsigned long long g_clock_window[2];

// Busy-waits `ns` of the global timer (one thread) and records the SM clock ticks meanwhile.
__global__ void clock_kernel(uint64_t ns) {
  const uint64_t t0 = global_timer_ns();
  const long long c0 = clock64();
  uint64_t t1 = t0;
  while (t1 - t0 < ns) t1 = global_timer_ns();
  const long long c1 = clock64();
  g_clock_window[0] = static_cast<unsigned long long>(c1 - c0);
  g_clock_window[1] = t1 - t0;
}

}  // namespace

double sm_clock_mhz(cudaStream_t stream) {
  constexpr uint64_t kWindowNs = 200000;  // long against the global timer's ~1 µs steps
  clock_kernel<<<1, 1, 0, stream>>>(kWindowNs);
  BENCH_LAUNCH_CHECK();
  unsigned long long h[2] = {0, 0};
  BENCH_CUDA_CHECK(cudaMemcpyFromSymbolAsync(h, g_clock_window, sizeof(h), 0,
                                             cudaMemcpyDeviceToHost, stream));
  BENCH_CUDA_CHECK(cudaStreamSynchronize(stream));
  return h[1] > 0 ? 1e3 * static_cast<double>(h[0]) / static_cast<double>(h[1]) : 0.0;
}

int64_t KvPool::page_elems() const {
  return static_cast<int64_t>(flash_mla::kPageBlockSize) * heads_kv * flash_mla::kHeadDim;
}

static int min_pages_for(const Case& c) {
  return (c.seqlen_q + flash_mla::kPageBlockSize - 1) / flash_mla::kPageBlockSize;
}

bool KvPool::matches(const Case& c) const {
  return cache != nullptr && dtype == c.dtype && batch == c.batch && heads_kv == c.heads_kv &&
         seqlen_k == c.seqlen_k && lengths == c.lengths && long_len == c.long_len &&
         min_pages == min_pages_for(c);
}

void free_pool(KvPool& pool) {
  device_free(pool.cache);
  device_free(pool.block_table);
  pool = KvPool{};
}

void make_pool(const Case& c, uint64_t seed, int64_t l2_bytes, cudaStream_t stream, KvPool& pool) {
  free_pool(pool);
  pool.dtype = c.dtype;
  pool.batch = c.batch;
  pool.heads_kv = c.heads_kv;
  pool.seqlen_k = c.seqlen_k;
  pool.lengths = c.lengths;
  pool.long_len = c.long_len;
  pool.min_pages = min_pages_for(c);

  pool.raw_len = raw_seqlens(c, seed);
  pool.pages.resize(c.batch);
  pool.pages_per_copy = 0;
  pool.max_blocks = 1;
  for (int b = 0; b < c.batch; ++b) {
    const int pages = (pool.raw_len[b] + flash_mla::kPageBlockSize - 1) / flash_mla::kPageBlockSize;
    pool.pages[b] = std::max(pages, pool.min_pages);
    pool.pages_per_copy += pool.pages[b];
    pool.max_blocks = std::max(pool.max_blocks, pool.pages[b]);
  }
  pool.pages_per_copy = std::max<int64_t>(pool.pages_per_copy, 1);

  const int64_t page_bytes = pool.page_elems() * dtype_bytes(c.dtype);
  const int64_t copy_bytes = pool.pages_per_copy * page_bytes;
  pool.copies = static_cast<int>(std::clamp<int64_t>(
      (kL2Multiple * l2_bytes + copy_bytes - 1) / copy_bytes, 1, kMaxCopies));
  pool.num_blocks = pool.copies * pool.pages_per_copy;

  // A random permutation of all physical pages, dealt out to (copy, b, t) in order: every copy
  // owns its own pages, scattered over the whole cache. Columns past a sequence's pages are -1
  // (SPEC §3: they must never be dereferenced).
  std::vector<int32_t> perm(static_cast<size_t>(pool.num_blocks));
  std::iota(perm.begin(), perm.end(), 0);
  std::mt19937_64 rng(seed ^ 0xB10C7AB1Eull ^ static_cast<uint64_t>(pool.num_blocks));
  std::shuffle(perm.begin(), perm.end(), rng);
  pool.block_table_host.assign(static_cast<size_t>(pool.copies) * c.batch * pool.max_blocks, -1);
  size_t next = 0;
  for (int cp = 0; cp < pool.copies; ++cp)
    for (int b = 0; b < c.batch; ++b)
      for (int t = 0; t < pool.pages[b]; ++t)
        pool.block_table_host[(static_cast<size_t>(cp) * c.batch + b) * pool.max_blocks + t] =
            perm[next++];

  pool.cache = device_alloc<uint16_t>(pool.num_blocks * pool.page_elems());
  pool.block_table = device_alloc<int32_t>(static_cast<int64_t>(pool.block_table_host.size()));
  BENCH_CUDA_CHECK(cudaMemcpyAsync(pool.block_table, pool.block_table_host.data(),
                                   pool.block_table_host.size() * sizeof(int32_t),
                                   cudaMemcpyHostToDevice, stream));
  fill_random(pool.cache, c.dtype, pool.num_blocks * pool.page_elems(), seed ^ 0xCAC4Eull, 1.0f,
              stream);
  BENCH_CUDA_CHECK(cudaStreamSynchronize(stream));  // the host vector above must outlive the copy
}

void free_case_buffers(CaseBuffers& buf) {
  device_free(buf.d_seqlens);
  device_free(buf.q);
  device_free(buf.out);
  device_free(buf.lse);
  device_free(buf.num_splits);
  buf = CaseBuffers{};
}

void make_case_buffers(const Case& c, const KvPool& pool, uint64_t seed, cudaStream_t stream,
                       CaseBuffers& buf) {
  free_case_buffers(buf);
  buf.copies = pool.copies;
  buf.seqlens.resize(c.batch);
  for (int b = 0; b < c.batch; ++b) buf.seqlens[b] = std::max(pool.raw_len[b], c.seqlen_q);

  const int64_t rows = static_cast<int64_t>(c.batch) * c.seqlen_q * c.heads_q;
  const int64_t q_elems = buf.copies * rows * flash_mla::kHeadDim;
  buf.d_seqlens = device_alloc<int32_t>(c.batch);
  buf.q = device_alloc<uint16_t>(q_elems);
  buf.out = device_alloc<uint16_t>(buf.copies * rows * flash_mla::kHeadDimV);
  buf.lse = device_alloc<float>(buf.copies * rows);
  buf.num_splits = device_alloc<int32_t>(c.batch + 1);
  BENCH_CUDA_CHECK(cudaMemcpyAsync(buf.d_seqlens, buf.seqlens.data(), c.batch * sizeof(int32_t),
                                   cudaMemcpyHostToDevice, stream));
  const uint64_t q_seed = seed ^ (0x51ull << 40) ^ (static_cast<uint64_t>(c.heads_q) << 20) ^
                          static_cast<uint64_t>(c.seqlen_q);
  fill_random(buf.q, c.dtype, q_elems, q_seed, 1.0f, stream);
  BENCH_CUDA_CHECK(cudaStreamSynchronize(stream));  // buf.seqlens is read by the async copy
}

}  // namespace bench
