// Output check of every benchmark case against the float64 CPU reference, and the closed-form
// self-check of that reference for machines without a GPU.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <future>
#include <limits>
#include <map>
#include <random>

#include "bench_common.h"
#include "reference/reference.h"

namespace bench {
namespace {

namespace ref = flash_mla::ref;
constexpr int kD = flash_mla::kHeadDim;
constexpr int kDv = flash_mla::kHeadDimV;
constexpr int kPage = flash_mla::kPageBlockSize;

double default_scale() { return 1.0 / std::sqrt(static_cast<double>(kD)); }

float to_float(flash_mla::DType dtype, uint16_t bits) {
  return dtype == flash_mla::DType::kFP16 ? ref::fp16_to_float(bits) : ref::bf16_to_float(bits);
}

}  // namespace

std::shared_future<std::vector<RefRow>> start_reference(const Case& c, const KvPool& pool,
                                                        const CaseBuffers& buf, int num_rows,
                                                        uint64_t seed) {
  // Rows to check: the last query token (the one that sees the most keys) of a longest
  // sequence, then seeded random (b, i, h).
  std::mt19937_64 rng(seed ^ 0x5EEDull);
  std::uniform_int_distribution<int> pick_b(0, c.batch - 1), pick_i(0, c.seqlen_q - 1),
      pick_h(0, c.heads_q - 1);
  const int longest = static_cast<int>(
      std::max_element(buf.seqlens.begin(), buf.seqlens.end()) - buf.seqlens.begin());
  std::vector<RefRow> rows;
  rows.push_back(RefRow{longest, c.seqlen_q - 1, pick_h(rng), {}, 0.0});
  while (static_cast<int>(rows.size()) < num_rows)
    rows.push_back(RefRow{pick_b(rng), pick_i(rng), pick_h(rng), {}, 0.0});

  // Gather, now and on this thread (the only one that touches CUDA), each sampled sequence of
  // copy 0: its q [s_q, h_q, 576] and its pages in logical order, so that the reference runs
  // on a batch-1 problem with an identity block table.
  struct Sequence {
    int b = 0, len = 0, pages = 0;
    std::vector<uint16_t> q, kv;
    std::vector<size_t> rows;  // indices into `rows`
  };
  std::map<int, Sequence> seqs;
  for (size_t r = 0; r < rows.size(); ++r) seqs[rows[r].b].rows.push_back(r);
  const int64_t q_elems = static_cast<int64_t>(c.seqlen_q) * c.heads_q * kD;
  const int64_t page_elems = pool.page_elems();
  for (auto& [b, s] : seqs) {
    s.b = b;
    s.len = buf.seqlens[b];
    s.pages = (s.len + kPage - 1) / kPage;
    s.q.resize(static_cast<size_t>(q_elems));
    BENCH_CUDA_CHECK(cudaMemcpy(s.q.data(), static_cast<const uint16_t*>(buf.q) + b * q_elems,
                                q_elems * sizeof(uint16_t), cudaMemcpyDeviceToHost));
    s.kv.resize(static_cast<size_t>(s.pages * page_elems));
    const int32_t* bt_row = pool.block_table_host.data() + static_cast<size_t>(b) * pool.max_blocks;
    for (int t = 0; t < s.pages; ++t)
      BENCH_CUDA_CHECK(cudaMemcpy(s.kv.data() + t * page_elems,
                                  static_cast<const uint16_t*>(pool.cache) + bt_row[t] * page_elems,
                                  page_elems * sizeof(uint16_t), cudaMemcpyDeviceToHost));
  }

  // The float64 work runs on host threads (one per sequence) while the GPU is being timed.
  return std::async(std::launch::async, [c, rows = std::move(rows),
                                         seqs = std::move(seqs)]() mutable {
    std::vector<std::future<void>> jobs;
    for (auto& entry : seqs) {
      Sequence* s = &entry.second;
      jobs.push_back(std::async(std::launch::async, [&c, &rows, s]() {
        std::vector<float> q_f(s->q.size()), k_f(s->kv.size());
        for (size_t x = 0; x < s->q.size(); ++x) q_f[x] = to_float(c.dtype, s->q[x]);
        for (size_t x = 0; x < s->kv.size(); ++x) k_f[x] = to_float(c.dtype, s->kv[x]);
        std::vector<int32_t> identity(s->pages);
        for (int t = 0; t < s->pages; ++t) identity[t] = t;
        const int32_t seqlen = s->len;
        ref::RefProblem p;
        p.batch = 1;
        p.seqlen_q = c.seqlen_q;
        p.num_heads_q = c.heads_q;
        p.num_heads_kv = c.heads_kv;
        p.page_block_size = kPage;
        p.max_blocks_per_seq = s->pages;
        p.causal = c.causal;
        p.softmax_scale = default_scale();
        for (size_t r : s->rows) {
          rows[r].out.assign(kDv, 0.0);
          ref::reference_row(p, q_f.data(), k_f.data(), identity.data(), &seqlen, 0, rows[r].i,
                             rows[r].h, rows[r].out.data(), &rows[r].lse);
        }
      }));
    }
    for (auto& j : jobs) j.get();
    return std::move(rows);
  }).share();
}

CheckResult check_rows(const Case& c, const std::vector<RefRow>& ref,
                       const std::vector<uint16_t>& out_host, const std::vector<float>& lse_host) {
  CheckResult res;
  for (uint16_t v : out_host) res.has_nan |= std::isnan(to_float(c.dtype, v));
  for (float v : lse_host) res.has_nan |= std::isnan(v);
  if (res.has_nan) res.note = "NaN in output (unwritten or wrong)";

  for (const RefRow& r : ref) {
    const size_t row = (static_cast<size_t>(r.b) * c.seqlen_q + r.i) * c.heads_q + r.h;
    double max_ref = 0.0, max_diff = 0.0;
    for (int d = 0; d < kDv; ++d) {
      const double o = to_float(c.dtype, out_host[row * kDv + d]);
      max_ref = std::max(max_ref, std::fabs(r.out[d]));
      const double diff = std::fabs(o - r.out[d]);
      max_diff = std::isnan(diff) ? std::numeric_limits<double>::infinity()
                                  : std::max(max_diff, diff);
    }
    // An all-zero reference row (no valid key) is compared absolutely.
    const double out_err = max_ref > 0.0 ? max_diff / max_ref : max_diff;

    const double l = lse_host[(static_cast<size_t>(r.b) * c.heads_q + r.h) * c.seqlen_q + r.i];
    double lse_err;
    if (std::isinf(r.lse) || std::isinf(l))
      lse_err = (l == r.lse) ? 0.0 : std::numeric_limits<double>::infinity();
    else  // relative, but not blown up where the lse happens to be near 0
      lse_err = std::fabs(l - r.lse) / std::max(1.0, std::fabs(r.lse));
    if (std::isnan(lse_err)) lse_err = std::numeric_limits<double>::infinity();

    if ((out_err > kOutTolerance || lse_err > kLseTolerance) && res.note.empty()) {
      char buf[160];
      std::snprintf(buf, sizeof(buf), "row b=%d i=%d h=%d: out err %.3g, lse %.6g vs ref %.6g",
                    r.b, r.i, r.h, out_err, l, r.lse);
      res.note = buf;
    }
    res.out_err = std::max(res.out_err, out_err);
    res.lse_err = std::max(res.lse_err, lse_err);
  }
  return res;
}

// ---------------------------------------------------------------------------------------------
// CPU self-check: problems whose answer is known in closed form. Values are small multiples of
// 1/4, exact in bf16 and fp16; KV slots past L and block-table entries past the used pages are
// poisoned (NaN, -1) since the reference must honour SPEC §3 too.
// ---------------------------------------------------------------------------------------------
namespace {

struct TinyProblem {
  ref::RefProblem p;
  std::vector<float> q, k;
  std::vector<int32_t> block_table, seqlens;
  TinyProblem(int s_q, int num_blocks, int max_blocks, int len, bool causal) {
    p.batch = 1;
    p.seqlen_q = s_q;
    p.num_heads_q = 1;
    p.num_heads_kv = 1;
    p.page_block_size = kPage;
    p.max_blocks_per_seq = max_blocks;
    p.causal = causal;
    p.softmax_scale = default_scale();
    q.assign(static_cast<size_t>(s_q) * kD, 0.0f);
    k.assign(static_cast<size_t>(num_blocks) * kPage * kD, std::numeric_limits<float>::quiet_NaN());
    block_table.assign(max_blocks, -1);
    seqlens = {len};
  }
  float* key(int physical_slot) { return k.data() + static_cast<size_t>(physical_slot) * kD; }
};

int g_failures = 0;

void expect(bool ok, const char* what) {
  std::printf("  %-62s %s\n", what, ok ? "ok" : "FAILED");
  if (!ok) ++g_failures;
}

bool near(double a, double b) { return std::fabs(a - b) <= 1e-12 * std::max(1.0, std::fabs(b)); }

bool row_is(const std::vector<double>& out, const std::vector<double>& want) {
  for (int d = 0; d < kDv; ++d)
    if (!near(out[d], want[d])) return false;
  return true;
}

void run_row(TinyProblem& t, int i, std::vector<double>& out, double& lse) {
  out.assign(kDv, -1.0);
  ref::reference_row(t.p, t.q.data(), t.k.data(), t.block_table.data(), t.seqlens.data(), 0, i, 0,
                     out.data(), &lse);
}

}  // namespace

bool cpu_reference_selfcheck() {
  g_failures = 0;
  std::printf("CPU reference self-check\n");
  expect(ref::float_to_bf16(1.0f) == 0x3F80 && ref::bf16_to_float(0x3F80) == 1.0f,
         "bf16 1.0 <-> 0x3F80");
  expect(ref::float_to_bf16(1.00390625f) == 0x3F80, "bf16 rounds a tie to even");
  expect(ref::float_to_fp16(1.0f) == 0x3C00 && ref::fp16_to_float(0x3C00) == 1.0f,
         "fp16 1.0 <-> 0x3C00");
  expect(std::isnan(ref::bf16_to_float(ref::float_to_bf16(std::nanf("")))), "bf16 NaN stays NaN");

  std::vector<double> out, want(kDv);
  double lse = 0.0;
  const double scale = default_scale();

  {  // One key: out is its V row, lse its score.
    TinyProblem t(1, 1, 1, 1, false);
    t.block_table[0] = 0;
    double dot = 0.0;
    for (int d = 0; d < kD; ++d) {
      t.key(0)[d] = 0.25f * static_cast<float>(d % 7 - 3);
      t.q[d] = d < 8 || d >= kDv ? 0.5f : 0.0f;
      dot += static_cast<double>(t.q[d]) * t.key(0)[d];
    }
    for (int d = 0; d < kDv; ++d) want[d] = t.key(0)[d];
    run_row(t, 0, out, lse);
    expect(row_is(out, want) && near(lse, scale * dot), "one key: out = V, lse = score");
  }
  {  // Two keys with equal scores (q only on a RoPE channel): out = mean of V, lse = s + ln 2.
    TinyProblem t(1, 1, 1, 2, false);
    t.block_table[0] = 0;
    t.q[kDv] = 2.0f;
    for (int j = 0; j < 2; ++j)
      for (int d = 0; d < kD; ++d) t.key(j)[d] = d == kDv ? 1.5f : 0.25f * static_cast<float>((d + 3 * j) % 5);
    for (int d = 0; d < kDv; ++d) want[d] = 0.5 * (t.key(0)[d] + t.key(1)[d]);
    run_row(t, 0, out, lse);
    expect(row_is(out, want) && near(lse, scale * 3.0 + std::log(2.0)),
           "two equal-score keys: out = mean V, lse = s + ln 2");

    // The same keys, causal with s_q = 2: token 0 sees only key 0, token 1 both.
    TinyProblem u(2, 1, 1, 2, true);
    u.block_table[0] = 0;
    u.k = t.k;
    u.q[kDv] = 2.0f;
    u.q[kD + kDv] = 2.0f;
    run_row(u, 0, out, lse);
    for (int d = 0; d < kDv; ++d) want[d] = u.key(0)[d];
    expect(row_is(out, want) && near(lse, scale * 3.0), "causal s_q=2, token 0: only key 0");
    run_row(u, 1, out, lse);
    for (int d = 0; d < kDv; ++d) want[d] = 0.5 * (u.key(0)[d] + u.key(1)[d]);
    expect(row_is(out, want) && near(lse, scale * 3.0 + std::log(2.0)),
           "causal s_q=2, token 1: both keys");
  }
  {  // No valid key: L = 0, and causal token 0 when L = 1 < s_q.
    TinyProblem t(1, 1, 1, 0, false);
    run_row(t, 0, out, lse);
    std::fill(want.begin(), want.end(), 0.0);
    expect(row_is(out, want) && std::isinf(lse) && lse > 0, "L = 0: out = 0, lse = +inf");
    TinyProblem u(2, 1, 1, 1, true);
    u.block_table[0] = 0;
    for (int d = 0; d < kD; ++d) u.key(0)[d] = 0.75f;
    run_row(u, 0, out, lse);
    expect(row_is(out, want) && std::isinf(lse) && lse > 0, "causal, L = 1 < s_q: token 0 empty");
    run_row(u, 1, out, lse);
    std::fill(want.begin(), want.end(), 0.75);
    expect(row_is(out, want) && near(lse, 0.0), "causal, L = 1 < s_q: token 1 sees key 0");
  }
  {  // Paging: 65 tokens over 2 pages mapped in reverse (block table [1, 0], a third entry -1).
     // Equal scores, V of token j = j/4 everywhere: out = mean(j)/4 = 8, lse = s + ln 65.
    TinyProblem t(1, 2, 3, 65, false);
    t.block_table[0] = 1;
    t.block_table[1] = 0;
    t.q[kDv] = 1.0f;
    for (int j = 0; j < 65; ++j) {
      float* key = t.key(t.block_table[j / kPage] * kPage + j % kPage);
      for (int d = 0; d < kD; ++d) key[d] = d == kDv ? 1.0f : 0.25f * static_cast<float>(j);
    }
    run_row(t, 0, out, lse);
    std::fill(want.begin(), want.end(), 8.0);
    expect(row_is(out, want) && near(lse, scale + std::log(65.0)),
           "paged, reversed block table, NaN past L: out = mean V");
  }
  std::printf("CPU reference self-check: %s\n", g_failures == 0 ? "passed" : "FAILED");
  return g_failures == 0;
}

}  // namespace bench
