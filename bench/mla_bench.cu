// flash_mla_bench: times flash_mla::decode() over SPEC §6's sweep against ceilings measured in
// the same run, and checks every case's output against the float64 CPU reference.
//
// Per case and kernel:
//   1. the schedule (compute_metadata), then warm-up decode() calls rotating over the copies;
//   2. `reps` decode() calls, each between two CUDA events, queued behind a spin kernel so the
//      events time the GPU and not the host; the median is reported (µs), likewise for the
//      metadata alone (meta_us);
//      the SM clock right after the timed calls is recorded (sm_mhz);
//   3. copy 0's out / lse are poisoned with NaN, decode() runs, and sampled rows are compared
//      with the reference; a second poisoned run must match the first bit for bit (SPEC §3).
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <numeric>
#include <thread>
#include <vector>

#include "bench_common.h"

namespace bench {

[[noreturn]] void die(const char* file, int line, const std::string& what) {
  std::fflush(stdout);
  std::fprintf(stderr, "flash_mla_bench: fatal: %s:%d: %s\n", file, line, what.c_str());
  std::exit(3);
}

namespace {

using flash_mla::KernelChoice;
using flash_mla::Status;
using flash_mla::StatusCode;

// The spin that the timed launches queue behind lasts long enough for the host to queue them
// all (measured host cost per call, with this margin), within these bounds.
constexpr double kSpinMargin = 2.0;
constexpr double kMinSpinUs = 20.0;
constexpr double kMaxSpinUs = 200e3;

// A library status: kCudaError may have left the context unusable, so it ends the run;
// kNotSupported marks the kernel as unavailable here; anything else fails the case.
bool status_ok(const Status& st, const char* call, Result& r) {
  if (st.ok()) return true;
  const std::string msg = std::string(call) + ": " +
                          flash_mla::status_code_name(st.code()) + ": " + st.message();
  if (st.code() == StatusCode::kCudaError) die(__FILE__, __LINE__, msg);
  (st.code() == StatusCode::kNotSupported ? r.skipped : r.failed) = true;
  r.note = msg;
  return false;
}

// Median µs of reps calls of `launch(rep)` (which returns a Status), each between events.
template <typename Launch>
double time_median_us(cudaStream_t stream, int reps, double host_us_per_call, Launch&& launch) {
  std::vector<cudaEvent_t> ev(2 * reps);
  for (cudaEvent_t& e : ev) BENCH_CUDA_CHECK(cudaEventCreate(&e));
  const double spin_us =
      std::clamp(kSpinMargin * host_us_per_call * reps, kMinSpinUs, kMaxSpinUs);
  gpu_spin(static_cast<uint64_t>(spin_us * 1e3), stream);
  for (int r = 0; r < reps; ++r) {
    BENCH_CUDA_CHECK(cudaEventRecord(ev[2 * r], stream));
    const Status st = launch(r);
    if (!st.ok()) die(__FILE__, __LINE__, "timed call failed after passing before: " + st.message());
    BENCH_CUDA_CHECK(cudaEventRecord(ev[2 * r + 1], stream));
  }
  BENCH_CUDA_CHECK(cudaStreamSynchronize(stream));
  std::vector<float> ms(reps);
  for (int r = 0; r < reps; ++r)
    BENCH_CUDA_CHECK(cudaEventElapsedTime(&ms[r], ev[2 * r], ev[2 * r + 1]));
  for (cudaEvent_t& e : ev) BENCH_CUDA_CHECK(cudaEventDestroy(e));
  std::sort(ms.begin(), ms.end());
  const double med = reps % 2 ? ms[reps / 2] : 0.5 * (ms[reps / 2 - 1] + ms[reps / 2]);
  return med * 1e3;
}

// Runs `calls` untimed calls of launch(n) and returns the host µs per call (queueing only).
template <typename Launch>
double warm_up(cudaStream_t stream, int calls, Launch&& launch) {
  const auto t0 = std::chrono::steady_clock::now();
  for (int n = 0; n < calls; ++n) {
    const Status st = launch(n);
    if (!st.ok()) die(__FILE__, __LINE__, "warm-up call failed after passing before: " + st.message());
  }
  const auto t1 = std::chrono::steady_clock::now();
  BENCH_CUDA_CHECK(cudaStreamSynchronize(stream));
  return calls > 0 ? std::chrono::duration<double, std::micro>(t1 - t0).count() / calls : 10.0;
}

template <typename T>
void grow(T*& p, int64_t& capacity, int64_t count) {
  if (count <= capacity) return;
  if (p != nullptr) BENCH_CUDA_CHECK(cudaFree(p));
  BENCH_CUDA_CHECK(cudaMalloc(&p, static_cast<size_t>(count) * sizeof(T)));
  capacity = count;
}

struct Scratch {  // schedule and workspace, grown as kernels ask for more
  int32_t* metadata = nullptr;
  int64_t metadata_elems = 0;
  uint8_t* workspace = nullptr;  // cudaMalloc: 256-byte aligned
  int64_t workspace_bytes = 0;
  ~Scratch() {
    cudaFree(metadata);
    cudaFree(workspace);
  }
};

Result run_one(const Options& opt, const Case& c, KernelChoice kernel, const KvPool& pool,
               const CaseBuffers& buf, const Ceilings& ceilings,
               const std::shared_future<std::vector<RefRow>>& reference, Scratch& scratch,
               cudaStream_t stream) {
  Result r;
  r.c = c;
  r.kernel = kernel;
  r.copies = buf.copies;
  r.sum_len = std::accumulate(buf.seqlens.begin(), buf.seqlens.end(), int64_t{0});
  const double rows_total = static_cast<double>(c.batch) * c.seqlen_q * c.heads_q;
  r.flops = 2.0 * c.seqlen_q * static_cast<double>(r.sum_len) * c.heads_q *
            (flash_mla::kHeadDim + flash_mla::kHeadDimV);
  r.bytes = 2.0 * (static_cast<double>(r.sum_len) * c.heads_kv * flash_mla::kHeadDim +
                   rows_total * flash_mla::kHeadDim + rows_total * flash_mla::kHeadDimV);

  flash_mla::DecodeProblem p;
  p.dtype = c.dtype;
  p.batch = c.batch;
  p.seqlen_q = c.seqlen_q;
  p.num_heads_q = c.heads_q;
  p.num_heads_kv = c.heads_kv;
  p.num_blocks = static_cast<int>(pool.num_blocks);
  p.max_blocks_per_seq = pool.max_blocks;
  p.causal = c.causal;
  p.kernel = kernel;
  const int rows_per_kv = p.rows_per_kv_head();

  int parts = 0;
  if (!status_ok(flash_mla::get_num_sm_parts(rows_per_kv, c.heads_kv, kernel, &parts),
                 "get_num_sm_parts", r))
    return r;
  size_t ws_bytes = 0;
  if (!status_ok(flash_mla::get_workspace_size(p, parts, &ws_bytes), "get_workspace_size", r))
    return r;
  grow(scratch.metadata, scratch.metadata_elems,
       static_cast<int64_t>(std::max(parts, 1)) * flash_mla::kMetadataFields);
  grow(scratch.workspace, scratch.workspace_bytes, static_cast<int64_t>(std::max<size_t>(ws_bytes, 1)));

  auto metadata = [&](int) {
    return flash_mla::compute_metadata(buf.d_seqlens, c.batch, rows_per_kv, c.heads_kv,
                                       scratch.metadata, parts, buf.num_splits, stream);
  };
  if (!status_ok(metadata(0), "compute_metadata", r)) return r;

  // Dense tensors, strides set by field name; copy `cp` of q / out / lse / block table.
  const int64_t rows = static_cast<int64_t>(rows_total);
  auto args_for = [&](int cp) {
    flash_mla::DecodeArgs a;
    a.q = static_cast<const uint16_t*>(buf.q) + cp * rows * flash_mla::kHeadDim;
    a.q_head_stride = flash_mla::kHeadDim;
    a.q_seq_stride = a.q_head_stride * c.heads_q;
    a.q_batch_stride = a.q_seq_stride * c.seqlen_q;
    a.k_cache = pool.cache;
    a.k_head_stride = flash_mla::kHeadDim;
    a.k_token_stride = a.k_head_stride * c.heads_kv;
    a.k_block_stride = a.k_token_stride * flash_mla::kPageBlockSize;
    a.block_table = pool.block_table + static_cast<int64_t>(cp) * c.batch * pool.max_blocks;
    a.block_table_batch_stride = pool.max_blocks;
    a.cache_seqlens = buf.d_seqlens;
    a.tile_scheduler_metadata = scratch.metadata;
    a.num_sm_parts = parts;
    a.num_splits = buf.num_splits;
    a.metadata_batch = c.batch;
    a.out = static_cast<uint16_t*>(buf.out) + cp * rows * flash_mla::kHeadDimV;
    a.out_head_stride = flash_mla::kHeadDimV;
    a.out_seq_stride = a.out_head_stride * c.heads_q;
    a.out_batch_stride = a.out_seq_stride * c.seqlen_q;
    a.lse = buf.lse + cp * rows;
    a.lse_seq_stride = 1;
    a.lse_head_stride = c.seqlen_q;
    a.lse_batch_stride = static_cast<int64_t>(c.heads_q) * c.seqlen_q;
    a.workspace = scratch.workspace;
    a.workspace_bytes = ws_bytes;
    return a;
  };
  const int copies = buf.copies;
  auto decode = [&](int n) { return flash_mla::decode(p, args_for(n % copies), stream); };

  // The first call validates; its rejection is the case's result.
  if (!status_ok(decode(0), "decode", r)) return r;
  BENCH_CUDA_CHECK(cudaStreamSynchronize(stream));

  // Timing: warm-up then timed calls continue the rotation, so no copy repeats until all
  // `copies` have been used.
  const double host_us = warm_up(stream, opt.warmup, [&](int n) { return decode(1 + n); });
  r.us = time_median_us(stream, opt.reps, host_us,
                        [&](int n) { return decode(1 + opt.warmup + n); });
  r.sm_mhz = sm_clock_mhz(stream);
  const double meta_host_us = warm_up(stream, std::max(opt.warmup, 1), metadata);
  r.meta_us = time_median_us(stream, opt.reps, meta_host_us, metadata);

  r.tflops = r.flops / (r.us * 1e-6) / 1e12;
  r.gbs = r.bytes / (r.us * 1e-6) / 1e9;
  r.pct_copy = ceilings.measured ? 100.0 * r.gbs / ceilings.copy_gbs : 0.0;
  r.pct_gemm = ceilings.measured ? 100.0 * r.tflops / ceilings.gemm_tflops : 0.0;

  // Check: two runs into NaN-poisoned outputs (0xFF.. is NaN in bf16, fp16 and fp32).
  std::vector<uint16_t> out_host[2];
  std::vector<float> lse_host[2];
  for (int run = 0; run < 2; ++run) {
    const flash_mla::DecodeArgs a = args_for(0);
    BENCH_CUDA_CHECK(cudaMemsetAsync(a.out, 0xFF, rows * flash_mla::kHeadDimV * sizeof(uint16_t), stream));
    BENCH_CUDA_CHECK(cudaMemsetAsync(a.lse, 0xFF, rows * sizeof(float), stream));
    if (!status_ok(flash_mla::decode(p, a, stream), "decode", r)) return r;
    out_host[run].resize(static_cast<size_t>(rows * flash_mla::kHeadDimV));
    lse_host[run].resize(static_cast<size_t>(rows));
    BENCH_CUDA_CHECK(cudaMemcpyAsync(out_host[run].data(), a.out,
                                     out_host[run].size() * sizeof(uint16_t),
                                     cudaMemcpyDeviceToHost, stream));
    BENCH_CUDA_CHECK(cudaMemcpyAsync(lse_host[run].data(), a.lse,
                                     lse_host[run].size() * sizeof(float),
                                     cudaMemcpyDeviceToHost, stream));
    BENCH_CUDA_CHECK(cudaStreamSynchronize(stream));
  }
  r.check = check_rows(c, reference.get(), out_host[0], lse_host[0]);
  const bool same = out_host[0] == out_host[1] &&
                    std::memcmp(lse_host[0].data(), lse_host[1].data(),
                                lse_host[0].size() * sizeof(float)) == 0;
  r.failed = r.check.has_nan || !(r.check.out_err <= kOutTolerance) ||
             !(r.check.lse_err <= kLseTolerance) || !same;
  r.note = !r.check.note.empty() ? r.check.note : !same ? "not bitwise reproducible" : "";
  return r;
}

std::string gpu_description(const cudaDeviceProp& prop) {
  char buf[128];
  std::snprintf(buf, sizeof(buf), " (sm_%d%d, %d SMs, L2 %.0f MB, %.0f GB)", prop.major,
                prop.minor, prop.multiProcessorCount, prop.l2CacheSize / 1e6,
                static_cast<double>(prop.totalGlobalMem) / 1e9);
  return std::string(prop.name) + buf;
}

}  // namespace
}  // namespace bench

int main(int argc, char** argv) {
  using namespace bench;
  const Options opt = parse_args(argc, argv);

  int count = 0;
  const cudaError_t err = cudaGetDeviceCount(&count);
  if (err != cudaSuccess || count == 0) {
    const std::string reason = err != cudaSuccess
                                   ? std::string(cudaGetErrorName(err)) + ": " + cudaGetErrorString(err)
                                   : "cudaGetDeviceCount found 0 devices";
    std::printf("no CUDA GPU found (%s): running the CPU reference check instead\n", reason.c_str());
    return cpu_reference_selfcheck() ? 0 : 1;
  }

  BENCH_CUDA_CHECK(cudaSetDevice(0));
  cudaDeviceProp prop{};
  BENCH_CUDA_CHECK(cudaGetDeviceProperties(&prop, 0));
  const flash_mla::Status supported = flash_mla::is_supported(0);
  if (!supported.ok()) {
    std::fprintf(stderr, "flash_mla_bench: %s cannot run flash_mla: %s\n", prop.name,
                 supported.message().c_str());
    return 2;
  }

  if (opt.l2_persist_mb >= 0) {
    const size_t want = std::min(static_cast<size_t>(opt.l2_persist_mb) << 20,
                                 static_cast<size_t>(prop.persistingL2CacheMaxSize));
    BENCH_CUDA_CHECK(cudaDeviceSetLimit(cudaLimitPersistingL2CacheSize, want));
  }

  cudaStream_t stream = nullptr;
  BENCH_CUDA_CHECK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  std::printf("flash_mla_bench  commit %s  seed %llu  reps %d  warmup %d  cases %zu x %zu kernels\n",
              opt.commit.c_str(), static_cast<unsigned long long>(opt.seed), opt.reps, opt.warmup,
              opt.cases.size(), opt.kernels.size());
  // A large set-aside slowed every case measured, by up to 21%, and the device's default is not
  // 0 everywhere (docs/perf-notes.md, "Not kept: an L2 set-aside for the partials"), so each run
  // says what it had.
  size_t persist = 0;
  BENCH_CUDA_CHECK(cudaDeviceGetLimit(&persist, cudaLimitPersistingL2CacheSize));
  std::printf("L2 set-aside for persisting accesses: %.1f MiB (device maximum %.1f MiB)\n",
              persist / 1048576.0, prop.persistingL2CacheMaxSize / 1048576.0);
  const Ceilings ceilings = opt.measure_ceilings ? measure_ceilings(stream) : Ceilings{};
  if (ceilings.measured && opt.settle_ms > 0) {
    // The sustained GEMM leaves the GPU at its power cap and a low SM clock; without a pause the
    // sweep's first case ran at it (docs/perf-notes.md, "The sweep's first case").
    std::this_thread::sleep_for(std::chrono::milliseconds(opt.settle_ms));
  }
  print_header(gpu_description(prop), ceilings);
  print_table_header();

  std::vector<Result> results;
  KvPool pool;
  CaseBuffers buf;
  Scratch scratch;
  for (const Case& c : opt.cases) {
    if (!pool.matches(c)) make_pool(c, opt.seed, prop.l2CacheSize, stream, pool);
    make_case_buffers(c, pool, opt.seed, stream, buf);
    const auto reference = start_reference(c, pool, buf, opt.verify_rows, opt.seed);
    for (KernelChoice kernel : opt.kernels) {
      results.push_back(run_one(opt, c, kernel, pool, buf, ceilings, reference, scratch, stream));
      print_row(results.back());
      if (!opt.json_path.empty()) write_json(opt.json_path, prop.name, opt.commit, ceilings, results);
    }
    reference.wait();  // its threads read nothing of buf, but finish before the next case
  }
  free_case_buffers(buf);
  free_pool(pool);
  if (ceilings.measured && !results.empty()) {
    const Ceilings end = measure_ceilings(stream);
    print_closing_ceilings(ceilings, end);
    if (!opt.json_path.empty()) write_json(opt.json_path, prop.name, opt.commit, ceilings, results, end);
  }
  BENCH_CUDA_CHECK(cudaStreamDestroy(stream));

  int failed = 0, skipped = 0;
  for (const Result& r : results) {
    failed += r.failed;
    skipped += r.skipped;
  }
  std::printf("%zu rows: %zu measured, %d skipped (kernel not available), %d FAILED%s%s\n",
              results.size(), results.size() - skipped, skipped, failed,
              opt.json_path.empty() ? "" : "; JSON: ", opt.json_path.c_str());
  for (const Result& r : results)
    if (r.failed)
      std::printf("FAILED: %s kernel=%s: %s\n", describe(r.c).c_str(),
                  flash_mla::kernel_name(r.kernel), r.note.c_str());
  return failed ? 1 : 0;
}
