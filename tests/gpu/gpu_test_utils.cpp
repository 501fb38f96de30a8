// Implementation of the GPU test helpers (see gpu_test_utils.h).
#include "gpu/gpu_test_utils.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdio>
#include <limits>
#include <numeric>
#include <random>
#include <sstream>
#include <thread>

namespace flash_mla::test {

bool gpu_available(std::string* reason) {
  int count = 0;
  const cudaError_t err = cudaGetDeviceCount(&count);
  if (err != cudaSuccess || count == 0) {
    *reason = std::string("no CUDA device: ") +
              (err != cudaSuccess ? cudaGetErrorString(err) : "cudaGetDeviceCount returned 0");
    return false;
  }
  const Status supported = is_supported(0);
  if (!supported.ok()) {
    *reason = "device 0 not supported: " + supported.message();
    return false;
  }
  return true;
}

cudaError_t DeviceBuffer::allocate(size_t bytes) {
  if (ptr_ != nullptr) cudaFree(ptr_);
  ptr_ = nullptr;
  bytes_ = 0;
  if (bytes == 0) return cudaSuccess;
  const cudaError_t err = cudaMalloc(&ptr_, bytes);
  if (err == cudaSuccess) bytes_ = bytes;
  return err;
}

cudaError_t DeviceBuffer::upload(const void* host, size_t bytes) {
  return bytes == 0 ? cudaSuccess : cudaMemcpy(ptr_, host, bytes, cudaMemcpyHostToDevice);
}

cudaError_t DeviceBuffer::download(void* host, size_t bytes) const {
  return bytes == 0 ? cudaSuccess : cudaMemcpy(host, ptr_, bytes, cudaMemcpyDeviceToHost);
}

float to_float(DType dtype, uint16_t bits) {
  return dtype == DType::kBF16 ? ref::bf16_to_float(bits) : ref::fp16_to_float(bits);
}

uint16_t from_float(DType dtype, float value) {
  return dtype == DType::kBF16 ? ref::float_to_bf16(value) : ref::float_to_fp16(value);
}

uint64_t seed_from_name(const std::string& name) {
  uint64_t hash = 1469598103934665603ull;
  for (unsigned char c : name) hash = (hash ^ c) * 1099511628211ull;
  return hash;
}

std::vector<int32_t> random_lengths(int batch, int lo, int hi, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<int32_t> length(lo, hi);
  std::vector<int32_t> lengths(batch);
  for (int32_t& len : lengths) len = length(rng);
  return lengths;
}

namespace {

// N(0, 1) samples rounded to the dtype, drawn fast: a seeded table of 2^16 normal samples
// indexed by a splitmix64 stream (the large cases need ~10^8 values).
class NormalSource {
 public:
  NormalSource(DType dtype, uint64_t seed) : state_(seed) {
    std::mt19937_64 rng(seed);
    std::normal_distribution<float> normal(0.0f, 1.0f);
    for (size_t t = 0; t < kTableSize; ++t) {
      bits_[t] = from_float(dtype, normal(rng));
      values_[t] = to_float(dtype, bits_[t]);
    }
  }
  // Writes one sample's bits and value.
  void next(uint16_t* bits, float* value) {
    if (spare_ == 0) {
      word_ = splitmix64();
      spare_ = 4;
    }
    const size_t t = word_ & (kTableSize - 1);
    word_ >>= 16;
    --spare_;
    *bits = bits_[t];
    *value = values_[t];
  }

 private:
  static constexpr size_t kTableSize = size_t{1} << 16;
  uint64_t splitmix64() {
    uint64_t z = (state_ += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  std::vector<uint16_t> bits_ = std::vector<uint16_t>(kTableSize);
  std::vector<float> values_ = std::vector<float>(kTableSize);
  uint64_t state_, word_ = 0;
  int spare_ = 0;
};

int pages_of(int seqlen) { return (seqlen + kPageBlockSize - 1) / kPageBlockSize; }

// Gaps between rows for the padded layouts; every stride stays a multiple of 8 elements.
void set_padded_strides(const DecodeProblem& p, DecodeArgs& a) {
  a.q_head_stride = kHeadDim + 64;
  a.q_seq_stride = p.num_heads_q * a.q_head_stride + 8;
  a.q_batch_stride = p.seqlen_q * a.q_seq_stride + 32;
  a.k_head_stride = kHeadDim + 8;
  a.k_token_stride = p.num_heads_kv * a.k_head_stride + 8 * 3;
  a.k_block_stride = kPageBlockSize * a.k_token_stride + 16;
  a.out_head_stride = kHeadDimV + 8;
  a.out_seq_stride = p.num_heads_q * a.out_head_stride + 8;
  a.out_batch_stride = p.seqlen_q * a.out_seq_stride + 8;
  a.lse_seq_stride = 1;
  a.lse_head_stride = p.seqlen_q + 1;
  a.lse_batch_stride = p.num_heads_q * a.lse_head_stride + 3;
  a.block_table_batch_stride = p.max_blocks_per_seq + 3;
}

size_t out_index(const DecodeArgs& a, int b, int i, int h) {
  return static_cast<size_t>(b * a.out_batch_stride + i * a.out_seq_stride +
                             h * a.out_head_stride);
}

size_t lse_index(const DecodeArgs& a, int b, int i, int h) {
  return static_cast<size_t>(b * a.lse_batch_stride + h * a.lse_head_stride +
                             i * a.lse_seq_stride);
}

// Runs fn(k) for k in [0, n) on all hardware threads.
template <typename Fn>
void parallel_for(size_t n, Fn fn) {
  const size_t workers = std::max(1u, std::thread::hardware_concurrency());
  std::vector<std::thread> threads;
  for (size_t w = 0; w < workers; ++w) {
    threads.emplace_back([=, &fn] {
      for (size_t k = w; k < n; k += workers) fn(k);
    });
  }
  for (std::thread& t : threads) t.join();
}

}  // namespace

size_t HostInputs::out_elements() const {
  return static_cast<size_t>(problem.batch) * args.out_batch_stride;
}

size_t HostInputs::lse_elements() const {
  return static_cast<size_t>(problem.batch) * args.lse_batch_stride;
}

HostInputs make_random_inputs(const DecodeShape& shape, uint64_t seed) {
  HostInputs in;
  const int batch = static_cast<int>(shape.seqlens.size());
  int used_pages = 0, max_pages = 0;
  for (int32_t len : shape.seqlens) {
    used_pages += pages_of(len);
    max_pages = std::max(max_pages, pages_of(len));
  }
  constexpr int kUnusedPages = 2;  // NaN pages nothing may read
  constexpr int kGarbageColumns = 2;

  DecodeProblem& p = in.problem;
  p.dtype = shape.dtype;
  p.batch = batch;
  p.seqlen_q = shape.seqlen_q;
  p.num_heads_q = shape.num_heads_q;
  p.num_heads_kv = shape.num_heads_kv;
  p.num_blocks = used_pages + kUnusedPages;
  p.max_blocks_per_seq = max_pages + kGarbageColumns;
  p.causal = shape.causal;
  p.softmax_scale = shape.softmax_scale;
  p.kernel = shape.kernel;
  set_contiguous_strides(p, in.args);
  if (shape.padded_strides) set_padded_strides(p, in.args);
  const DecodeArgs& a = in.args;

  in.ref_problem.batch = batch;
  in.ref_problem.seqlen_q = p.seqlen_q;
  in.ref_problem.num_heads_q = p.num_heads_q;
  in.ref_problem.num_heads_kv = p.num_heads_kv;
  in.ref_problem.page_block_size = kPageBlockSize;
  in.ref_problem.max_blocks_per_seq = p.max_blocks_per_seq;
  in.ref_problem.causal = p.causal;
  in.ref_problem.softmax_scale = shape.softmax_scale.has_value()
                                     ? static_cast<double>(*shape.softmax_scale)
                                     : 1.0 / std::sqrt(static_cast<double>(kHeadDim));
  in.seqlens = shape.seqlens;

  // Block table: a shuffled permutation of the pages, garbage past each sequence's last page.
  std::mt19937_64 rng(seed);
  std::vector<int32_t> pages(p.num_blocks);
  std::iota(pages.begin(), pages.end(), 0);
  std::shuffle(pages.begin(), pages.end(), rng);
  std::uniform_int_distribution<int32_t> large(p.num_blocks, std::numeric_limits<int32_t>::max());
  auto garbage = [&](size_t k) { return k % 3 == 0 ? -1 : k % 3 == 1 ? (1 << 30) : large(rng); };
  in.block_table_dense.resize(static_cast<size_t>(batch) * p.max_blocks_per_seq);
  in.block_table.resize(static_cast<size_t>(batch) * a.block_table_batch_stride);
  for (size_t k = 0; k < in.block_table.size(); ++k) in.block_table[k] = garbage(k);
  int next_page = 0;
  for (int b = 0; b < batch; ++b) {
    for (int t = 0; t < p.max_blocks_per_seq; ++t) {
      const int32_t entry = t < pages_of(shape.seqlens[b]) ? pages[next_page++] : garbage(t);
      in.block_table_dense[static_cast<size_t>(b) * p.max_blocks_per_seq + t] = entry;
      in.block_table[static_cast<size_t>(b) * a.block_table_batch_stride + t] = entry;
    }
  }

  // KV cache: random values for tokens < L_b, NaN everywhere else (tails, unused pages, gaps).
  NormalSource normal(p.dtype, seed ^ 0x6b76ull);
  const float nan = std::numeric_limits<float>::quiet_NaN();
  in.k_bits.assign(static_cast<size_t>(p.num_blocks) * a.k_block_stride, kNanBits16);
  in.k_values.assign(static_cast<size_t>(p.num_blocks) * kPageBlockSize * p.num_heads_kv *
                         kHeadDim, nan);
  for (int b = 0; b < batch; ++b) {
    for (int j = 0; j < shape.seqlens[b]; ++j) {
      const int32_t page =
          in.block_table_dense[static_cast<size_t>(b) * p.max_blocks_per_seq + j / kPageBlockSize];
      const int slot = j % kPageBlockSize;
      for (int g = 0; g < p.num_heads_kv; ++g) {
        uint16_t* bits = &in.k_bits[page * a.k_block_stride + slot * a.k_token_stride +
                                    g * a.k_head_stride];
        float* values = &in.k_values[((static_cast<size_t>(page) * kPageBlockSize + slot) *
                                          p.num_heads_kv + g) * kHeadDim];
        for (int d = 0; d < kHeadDim; ++d) normal.next(&bits[d], &values[d]);
      }
    }
  }

  // Queries: random everywhere in the view, NaN in the gaps.
  in.q_bits.assign(static_cast<size_t>(batch) * a.q_batch_stride, kNanBits16);
  in.q_values.resize(static_cast<size_t>(batch) * p.seqlen_q * p.num_heads_q * kHeadDim);
  float* q_value = in.q_values.data();
  for (int b = 0; b < batch; ++b) {
    for (int i = 0; i < p.seqlen_q; ++i) {
      for (int h = 0; h < p.num_heads_q; ++h, q_value += kHeadDim) {
        uint16_t* bits =
            &in.q_bits[b * a.q_batch_stride + i * a.q_seq_stride + h * a.q_head_stride];
        for (int d = 0; d < kHeadDim; ++d) normal.next(&bits[d], &q_value[d]);
      }
    }
  }
  return in;
}

void prepare_decode(const HostInputs& in, int num_sm_parts, cudaStream_t stream,
                    DeviceDecode* d) {
  d->problem = in.problem;
  d->args = in.args;
  FLASH_MLA_CUDA_ASSERT(upload_vector(in.q_bits, &d->q));
  FLASH_MLA_CUDA_ASSERT(upload_vector(in.k_bits, &d->k_cache));
  FLASH_MLA_CUDA_ASSERT(upload_vector(in.block_table, &d->block_table));
  FLASH_MLA_CUDA_ASSERT(upload_vector(in.seqlens, &d->seqlens));

  const int rows = in.problem.rows_per_kv_head();
  d->num_sm_parts = num_sm_parts;
  if (d->num_sm_parts == 0) {
    FLASH_MLA_ASSERT_OK(get_num_sm_parts(rows, in.problem.num_heads_kv, in.problem.kernel,
                                         &d->num_sm_parts));
    ASSERT_GT(d->num_sm_parts, 0);
  }
  const int batch = in.problem.batch;
  FLASH_MLA_CUDA_ASSERT(
      d->metadata.allocate(sizeof(int32_t) * d->num_sm_parts * kMetadataFields));
  FLASH_MLA_CUDA_ASSERT(d->num_splits.allocate(sizeof(int32_t) * (batch + 1)));
  FLASH_MLA_ASSERT_OK(compute_metadata(d->seqlens.get<int32_t>(), batch, rows,
                                       in.problem.num_heads_kv, d->metadata.get<int32_t>(),
                                       d->num_sm_parts, d->num_splits.get<int32_t>(), stream));

  size_t workspace_bytes = 0;
  FLASH_MLA_ASSERT_OK(get_workspace_size(in.problem, d->num_sm_parts, &workspace_bytes));
  FLASH_MLA_CUDA_ASSERT(d->workspace.allocate(workspace_bytes));
  FLASH_MLA_CUDA_ASSERT(d->out.allocate(in.out_elements() * sizeof(uint16_t)));
  FLASH_MLA_CUDA_ASSERT(d->lse.allocate(in.lse_elements() * sizeof(float)));

  DecodeArgs& a = d->args;
  a.q = d->q.get();
  a.k_cache = d->k_cache.get();
  a.block_table = d->block_table.get<int32_t>();
  a.cache_seqlens = d->seqlens.get<int32_t>();
  a.tile_scheduler_metadata = d->metadata.get<int32_t>();
  a.num_sm_parts = d->num_sm_parts;
  a.num_splits = d->num_splits.get<int32_t>();
  a.metadata_batch = batch;
  a.out = d->out.get();
  a.lse = d->lse.get<float>();
  a.workspace = d->workspace.get();
  a.workspace_bytes = workspace_bytes;
}

void download_outputs(const DeviceDecode& d, DecodeResult* r) {
  r->out.resize(d.out.bytes() / sizeof(uint16_t));
  r->lse.resize(d.lse.bytes() / sizeof(float));
  FLASH_MLA_CUDA_ASSERT(d.out.download(r->out.data(), d.out.bytes()));
  FLASH_MLA_CUDA_ASSERT(d.lse.download(r->lse.data(), d.lse.bytes()));
}

void run_decode(const HostInputs& in, int num_sm_parts, cudaStream_t stream, DecodeResult* r) {
  DeviceDecode d;
  prepare_decode(in, num_sm_parts, stream, &d);
  if (::testing::Test::HasFatalFailure()) return;
  FLASH_MLA_CUDA_ASSERT(cudaMemsetAsync(d.out.get(), kNanByte, d.out.bytes(), stream));
  FLASH_MLA_CUDA_ASSERT(cudaMemsetAsync(d.lse.get(), kNanByte, d.lse.bytes(), stream));
  FLASH_MLA_ASSERT_OK(decode(d.problem, d.args, stream));
  FLASH_MLA_CUDA_ASSERT(cudaStreamSynchronize(stream));
  FLASH_MLA_CUDA_ASSERT(cudaGetLastError());
  download_outputs(d, r);
}

ErrorStats compare_with_reference(const HostInputs& in, const DecodeResult& r, int sampled_rows,
                                  uint64_t seed) {
  const DecodeProblem& p = in.problem;
  const DecodeArgs& a = in.args;
  ErrorStats s;

  // Exact properties over the whole output: finite values, untouched padding, no NaN lse.
  std::vector<bool> in_view(r.out.size(), false);
  size_t nonfinite = 0, nan_lse = 0;
  for (int b = 0; b < p.batch; ++b) {
    for (int i = 0; i < p.seqlen_q; ++i) {
      for (int h = 0; h < p.num_heads_q; ++h) {
        const size_t row = out_index(a, b, i, h);
        for (int d = 0; d < kHeadDimV; ++d) {
          in_view[row + d] = true;
          nonfinite += !std::isfinite(to_float(p.dtype, r.out[row + d]));
        }
        nan_lse += std::isnan(r.lse[lse_index(a, b, i, h)]);
      }
    }
  }
  size_t padding_written = 0;
  for (size_t k = 0; k < r.out.size(); ++k) padding_written += !in_view[k] && r.out[k] != kNanBits16;
  EXPECT_EQ(nonfinite, 0u) << "out elements that are NaN/inf";
  EXPECT_EQ(nan_lse, 0u) << "lse entries that are NaN";
  EXPECT_EQ(padding_written, 0u) << "out elements written outside the strided view";

  // Rows to compare: all, or a seeded sample plus the first and last row.
  const size_t total_rows = static_cast<size_t>(p.batch) * p.seqlen_q * p.num_heads_q;
  std::vector<size_t> rows;
  if (sampled_rows <= 0 || static_cast<size_t>(sampled_rows) >= total_rows) {
    rows.resize(total_rows);
    std::iota(rows.begin(), rows.end(), size_t{0});
  } else {
    std::mt19937_64 rng(seed);
    std::uniform_int_distribution<size_t> pick(0, total_rows - 1);
    rows = {0, total_rows - 1};
    while (rows.size() < static_cast<size_t>(sampled_rows)) rows.push_back(pick(rng));
  }
  std::vector<double> ref_out(rows.size() * kHeadDimV), ref_lse(rows.size());
  auto row_coords = [&](size_t row) {  // row = (b * s_q + i) * h_q + h
    return std::array<int, 3>{static_cast<int>(row / (p.seqlen_q * p.num_heads_q)),
                              static_cast<int>(row / p.num_heads_q % p.seqlen_q),
                              static_cast<int>(row % p.num_heads_q)};
  };
  parallel_for(rows.size(), [&](size_t k) {
    const auto [b, i, h] = row_coords(rows[k]);
    ref::reference_row(in.ref_problem, in.q_values.data(), in.k_values.data(),
                       in.block_table_dense.data(), in.seqlens.data(), b, i, h,
                       &ref_out[k * kHeadDimV], &ref_lse[k]);
  });

  double err2 = 0, ref2 = 0, out2 = 0, dot = 0, baseline2 = 0;
  size_t empty_mismatches = 0, lse_inf_mismatches = 0;
  for (size_t k = 0; k < rows.size(); ++k) {
    const auto [b, i, h] = row_coords(rows[k]);
    const uint16_t* out_row = &r.out[out_index(a, b, i, h)];
    const double lse = r.lse[lse_index(a, b, i, h)];
    const double* ref_row = &ref_out[k * kHeadDimV];
    ++s.rows_compared;
    if (std::isinf(ref_lse[k])) {
      ++s.empty_rows;
      bool zero = lse == std::numeric_limits<double>::infinity();
      for (int d = 0; d < kHeadDimV; ++d) zero = zero && to_float(p.dtype, out_row[d]) == 0.0f;
      if (!zero && empty_mismatches++ == 0) {
        ADD_FAILURE() << "empty row (b=" << b << ", i=" << i << ", h=" << h
                      << ") needs out = 0 and lse = +inf; lse = " << lse;
      }
      continue;
    }
    if (!std::isfinite(lse) && lse_inf_mismatches++ == 0) {
      ADD_FAILURE() << "row (b=" << b << ", i=" << i << ", h=" << h << ") has keys but lse = "
                    << lse << " (reference " << ref_lse[k] << ")";
    }
    const double lse_scale = std::max(1.0, std::abs(ref_lse[k]));
    s.lse_max_rel_error = std::max(s.lse_max_rel_error, std::abs(lse - ref_lse[k]) / lse_scale);
    s.lse_baseline_rel_error =
        std::max(s.lse_baseline_rel_error,
                 std::abs(static_cast<float>(ref_lse[k]) - ref_lse[k]) / lse_scale);
    for (int d = 0; d < kHeadDimV; ++d) {
      const double o = to_float(p.dtype, out_row[d]), x = ref_row[d];
      const double rounded = to_float(p.dtype, from_float(p.dtype, static_cast<float>(x)));
      err2 += (o - x) * (o - x);
      baseline2 += (rounded - x) * (rounded - x);
      ref2 += x * x;
      out2 += o * o;
      dot += o * x;
    }
  }
  EXPECT_EQ(empty_mismatches, 0u) << "empty rows without out = 0, lse = +inf";
  EXPECT_EQ(lse_inf_mismatches, 0u) << "non-empty rows with a non-finite lse";
  if (ref2 > 0) {
    s.out_rel_frobenius = std::sqrt(err2 / ref2);
    s.baseline_rel_frobenius = std::sqrt(baseline2 / ref2);
    s.out_cosine_distance = out2 > 0 ? 1.0 - dot / std::sqrt(out2 * ref2) : 1.0;
  }
  return s;
}

std::string describe(const ErrorStats& s) {
  char text[512];
  std::snprintf(text, sizeof text,
                "rows %zu (empty %zu): out rel. Frobenius %.3e (dtype rounding of the reference "
                "alone %.3e), 1 - cos %.3e, lse max rel. error %.3e (fp32 rounding alone %.3e)",
                s.rows_compared, s.empty_rows, s.out_rel_frobenius, s.baseline_rel_frobenius,
                s.out_cosine_distance, s.lse_max_rel_error, s.lse_baseline_rel_error);
  return text;
}

void expect_within_error_bounds(DType dtype, const ErrorStats& s) {
  const double max_frobenius = dtype == DType::kBF16 ? kMaxRelFrobeniusBf16 : kMaxRelFrobeniusFp16;
  EXPECT_LE(s.out_rel_frobenius, max_frobenius) << describe(s);
  EXPECT_LE(s.out_cosine_distance, kMaxCosineDistance) << describe(s);
  EXPECT_LE(s.lse_max_rel_error, kMaxLseRelError) << describe(s);
}

}  // namespace flash_mla::test
