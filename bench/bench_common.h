// Shared declarations of the benchmark: the case description, options, results, error checks,
// and the functions each bench/*.cu|cpp file provides.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>
#include <future>
#include <string>
#include <vector>

#include "flash_mla/flash_mla.h"

namespace bench {

// ---------------------------------------------------------------------------------------------
// Errors: the benchmark is a program, so a failed CUDA/cuBLAS call ends it with a message.
// ---------------------------------------------------------------------------------------------
[[noreturn]] void die(const char* file, int line, const std::string& what);

#define BENCH_CUDA_CHECK(expr)                                                                \
  do {                                                                                        \
    const cudaError_t bench_err_ = (expr);                                                    \
    if (bench_err_ != cudaSuccess)                                                            \
      ::bench::die(__FILE__, __LINE__,                                                        \
                   std::string(#expr) + " -> " + cudaGetErrorName(bench_err_) + ": " +        \
                       cudaGetErrorString(bench_err_));                                       \
  } while (0)

// A launch of our own kernels: the launch error now, and any asynchronous one at the next check.
#define BENCH_LAUNCH_CHECK() BENCH_CUDA_CHECK(cudaGetLastError())

// ---------------------------------------------------------------------------------------------
// Cases
// ---------------------------------------------------------------------------------------------
enum class Lengths : int {
  kFixed = 0,    // every sequence has s_k tokens
  kNormal = 1,   // L ~ max(Normal(s_k, s_k / 2), s_q), seeded (FlashMLA's benchmark)
  kOneLong = 2,  // b - 1 sequences of s_k tokens and one of long_len (at a seeded position)
};

struct Case {
  flash_mla::DType dtype = flash_mla::DType::kBF16;
  int batch = 128;
  int seqlen_q = 1;
  int heads_q = 16;
  int heads_kv = 1;
  int seqlen_k = 4096;  // the mean (kNormal) or common (kFixed, kOneLong) length
  Lengths lengths = Lengths::kFixed;
  int long_len = 0;     // kOneLong only
  bool causal = true;
};

std::string describe(const Case& c);  // "bf16 b=128 s_q=1 h_q=16 h_kv=1 s_k=4096 varlen=0 ..."
const char* dtype_name(flash_mla::DType dtype);

struct Options {
  std::vector<Case> cases;
  std::vector<flash_mla::KernelChoice> kernels;
  int reps = 50;
  int warmup = 10;
  int verify_rows = 8;
  uint64_t seed = 2025;
  bool measure_ceilings = true;
  int settle_ms = 1000;  // idle time after the ceilings, before the first case
  int l2_persist_mb = -1;  // L2 set-aside for persisting accesses, MiB (-1: leave the device's)
  std::string json_path;
  std::string commit;
};

// Parses the command line (prints usage and exits on --help or a bad argument).
Options parse_args(int argc, char** argv);

// Raw sequence lengths of a case before the clamp to s_q (deterministic in seed and the case's
// length pattern; independent of h_q, s_q and dtype so that cases can share one KV cache).
std::vector<int> raw_seqlens(const Case& c, uint64_t seed);

// ---------------------------------------------------------------------------------------------
// Ceilings (ceilings.cu)
// ---------------------------------------------------------------------------------------------
struct Ceilings {
  double copy_gbs = 0.0;     // device-to-device copy, bytes read + written per second / 1e9
  double gemm_tflops = 0.0;  // cuBLAS bf16 8192^3, fp32 accumulation
  double gemm_sm_mhz = 0.0;  // SM clock right after the timed GEMMs (sm_clock_mhz)
  // The same GEMM timed after ~0.4 s of back-to-back GEMMs, and the clock after it: context
  // for long cases, which run at a power-capped clock (the rows use gemm_tflops).
  double gemm_sustained_tflops = 0.0;
  double gemm_sustained_sm_mhz = 0.0;
  bool measured = false;
};
Ceilings measure_ceilings(cudaStream_t stream);

// ---------------------------------------------------------------------------------------------
// Device inputs (inputs.cu)
// ---------------------------------------------------------------------------------------------
// Fills n 16-bit values of `dtype` with normal-ish values of standard deviation `stddev`,
// a pure function of (seed, index).
void fill_random(void* data, flash_mla::DType dtype, int64_t n, uint64_t seed, float stddev,
                 cudaStream_t stream);

// Keeps the GPU busy for `ns` nanoseconds, so that the host can queue the timed launches
// ahead of it and the events measure the GPU alone.
void gpu_spin(uint64_t ns, cudaStream_t stream);

// The SM clock now, in MHz: clock64 ticks over 200 µs of the global timer, one thread, run
// right after the stream's queued work. Under a sustained load the GPU lowers its clock (power
// cap); this is how far, at the end of a timed window.
double sm_clock_mhz(cudaStream_t stream);

// One paged KV cache holding `copies` independent copies of a case's sequences, so that timed
// iterations can rotate among them and not hit in L2.
struct KvPool {
  // What the pool was made for (cases with the same key share it).
  flash_mla::DType dtype = flash_mla::DType::kBF16;
  int batch = 0, heads_kv = 0, seqlen_k = 0, long_len = 0, min_pages = 0;
  Lengths lengths = Lengths::kFixed;

  std::vector<int> raw_len;        // [b]   lengths before the clamp to s_q
  std::vector<int> pages;          // [b]   pages allocated per sequence (>= min_pages)
  int max_blocks = 0;              // block_table columns
  int copies = 1;
  int64_t pages_per_copy = 0;
  int64_t num_blocks = 0;          // copies * pages_per_copy physical pages
  void* cache = nullptr;           // [num_blocks, 64, h_kv, 576]
  int32_t* block_table = nullptr;  // [copies, b, max_blocks]; unused entries -1
  std::vector<int32_t> block_table_host;

  int64_t page_elems() const;      // 64 * h_kv * 576
  bool matches(const Case& c) const;
};

// Frees `pool` and builds one for case `c` (shuffled block table, random data).
void make_pool(const Case& c, uint64_t seed, int64_t l2_bytes, cudaStream_t stream, KvPool& pool);
void free_pool(KvPool& pool);

// Per-case device buffers, [copies, ...] each (the schedule and the workspace depend on the
// kernel; mla_bench.cu keeps them).
struct CaseBuffers {
  int copies = 1;
  std::vector<int32_t> seqlens;      // [b] host copy, clamped to s_q
  int32_t* d_seqlens = nullptr;      // [b]
  void* q = nullptr;                 // [copies, b, s_q, h_q, 576]
  void* out = nullptr;               // [copies, b, s_q, h_q, 512]
  float* lse = nullptr;              // [copies, b, h_q, s_q]
  int32_t* num_splits = nullptr;     // [b + 1]
};
void make_case_buffers(const Case& c, const KvPool& pool, uint64_t seed, cudaStream_t stream,
                       CaseBuffers& buf);
void free_case_buffers(CaseBuffers& buf);

// ---------------------------------------------------------------------------------------------
// Verification (verify.cpp)
// ---------------------------------------------------------------------------------------------
struct RefRow {
  int b = 0, i = 0, h = 0;
  std::vector<double> out;  // [512]
  double lse = 0.0;
};

// Float64 reference of `num_rows` sampled (b, i, h) rows of copy 0, always including the last
// query token of a longest sequence. Each sequence's pages are gathered into a batch-1 problem
// with an identity block table, so the host never holds the whole cache.
// The pages and q rows are copied to the host before this returns; the float64 work runs on
// host threads, so the GPU can be timed meanwhile.
std::shared_future<std::vector<RefRow>> start_reference(const Case& c, const KvPool& pool,
                                                        const CaseBuffers& buf, int num_rows,
                                                        uint64_t seed);

struct CheckResult {
  double out_err = 0.0;  // max over rows of max|out - ref| / max|ref|
  double lse_err = 0.0;  // max over rows of |lse - ref| / max(1, |ref|)
  bool has_nan = false;  // any NaN anywhere in out or lse (poisoned before the run)
  std::string note;
};
inline constexpr double kOutTolerance = 1e-2;  // bf16 output rounding is 2^-8 ~ 4e-3
inline constexpr double kLseTolerance = 1e-4;  // fp32 accumulation of O(1e4..1e5) terms

// out_host [b, s_q, h_q, 512] (raw 16-bit) and lse_host [b, h_q, s_q] of copy 0.
CheckResult check_rows(const Case& c, const std::vector<RefRow>& ref,
                       const std::vector<uint16_t>& out_host, const std::vector<float>& lse_host);

// Closed-form checks of the CPU reference, for machines without a GPU. True when all pass.
bool cpu_reference_selfcheck();

// ---------------------------------------------------------------------------------------------
// Results and report (report.cpp)
// ---------------------------------------------------------------------------------------------
struct Result {
  Case c;
  flash_mla::KernelChoice kernel = flash_mla::KernelChoice::kAuto;
  bool skipped = false;  // the kernel is not available here (kNotSupported)
  bool failed = false;
  std::string note;      // why skipped or failed
  int copies = 1;
  int64_t sum_len = 0;
  double flops = 0, bytes = 0;
  double us = 0, meta_us = 0, tflops = 0, gbs = 0, pct_copy = 0, pct_gemm = 0;
  double sm_mhz = 0;  // SM clock right after the timed calls (sm_clock_mhz)
  CheckResult check;
};

void print_header(const std::string& gpu, const Ceilings& ceilings);
// The ceilings measured again after the sweep: the same GPU, warm after the whole run.
void print_closing_ceilings(const Ceilings& start, const Ceilings& end);
void print_table_header();
void print_row(const Result& r);
// `end`: the closing ceilings, written when measured.
void write_json(const std::string& path, const std::string& gpu, const std::string& commit,
                const Ceilings& ceilings, const std::vector<Result>& results,
                const Ceilings& end = Ceilings{});

}  // namespace bench
