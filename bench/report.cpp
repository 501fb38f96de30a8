// The stdout table and the JSON file (hand-written, no dependencies).
#include <cmath>
#include <cstdio>
#include <ctime>
#include <fstream>
#include <sstream>

#include "bench_common.h"

namespace bench {
namespace {

std::string json_string(const std::string& s) {
  std::string o = "\"";
  for (char ch : s) {
    const unsigned char u = static_cast<unsigned char>(ch);
    if (ch == '"' || ch == '\\') {
      o += '\\';
      o += ch;
    } else if (u < 0x20) {
      char buf[8];
      std::snprintf(buf, sizeof(buf), "\\u%04x", u);
      o += buf;
    } else {
      o += ch;
    }
  }
  return o + "\"";
}

// JSON has no NaN or infinity: those become null.
std::string json_number(double v) {
  if (!std::isfinite(v)) return "null";
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.6g", v);
  return buf;
}

std::string iso_date_utc() {
  const std::time_t now = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&now, &tm);
  char buf[32];
  std::strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

}  // namespace

void print_header(const std::string& gpu, const Ceilings& ceilings) {
  std::printf("GPU: %s\n", gpu.c_str());
  if (ceilings.measured)
    std::printf("ceilings (this run): copy %.0f GB/s (read + write, 1 GiB D2D), "
                "cuBLAS bf16 GEMM %.0f TFLOPS (8192^3, SM clock %.0f MHz after it; "
                "sustained %.0f TFLOPS, %.0f MHz)\n",
                ceilings.copy_gbs, ceilings.gemm_tflops, ceilings.gemm_sm_mhz,
                ceilings.gemm_sustained_tflops, ceilings.gemm_sustained_sm_mhz);
  else
    std::printf("ceilings: not measured (--no-ceilings)\n");
  std::fflush(stdout);
}

void print_closing_ceilings(const Ceilings& start, const Ceilings& end) {
  std::printf("ceilings again after the sweep: copy %.0f GB/s (%+.1f%%), cuBLAS bf16 GEMM %.0f "
              "TFLOPS (%+.1f%%, SM clock %.0f MHz after it; sustained %.0f TFLOPS, %.0f MHz); "
              "the rows use the first ceilings\n",
              end.copy_gbs, 100.0 * (end.copy_gbs / start.copy_gbs - 1.0), end.gemm_tflops,
              100.0 * (end.gemm_tflops / start.gemm_tflops - 1.0), end.gemm_sm_mhz,
              end.gemm_sustained_tflops, end.gemm_sustained_sm_mhz);
  std::fflush(stdout);
}

void print_table_header() {
  std::printf("%-10s %-5s %4s %3s %4s %4s %6s %2s %9s %8s %7s %7s %6s %6s %5s  %s\n", "kernel",
              "dtype", "b", "s_q", "h_q", "h_kv", "s_k", "vl", "us", "meta_us", "TFLOPS", "GB/s",
              "%copy", "%gemm", "MHz", "err(out/lse)");
  std::fflush(stdout);
}

void print_row(const Result& r) {
  const Case& c = r.c;
  std::printf("%-10s %-5s %4d %3d %4d %4d %6d %2d ", flash_mla::kernel_name(r.kernel),
              dtype_name(c.dtype), c.batch, c.seqlen_q, c.heads_q, c.heads_kv, c.seqlen_k,
              static_cast<int>(c.lengths));
  if (r.skipped) {
    std::printf("skipped: %s\n", r.note.c_str());
  } else if (r.us <= 0.0) {  // failed before timing
    std::printf("FAILED: %s\n", r.note.c_str());
  } else {
    std::printf("%9.1f %8.1f %7.1f %7.0f %6.1f %6.1f %5.0f  %.1e/%.1e%s%s\n", r.us, r.meta_us,
                r.tflops, r.gbs, r.pct_copy, r.pct_gemm, r.sm_mhz, r.check.out_err, r.check.lse_err,
                r.failed ? "  FAILED: " : "", r.failed ? r.note.c_str() : "");
  }
  std::fflush(stdout);
}

void write_json(const std::string& path, const std::string& gpu, const std::string& commit,
                const Ceilings& ceilings, const std::vector<Result>& results,
                const Ceilings& end) {
  std::ostringstream os;
  const double nan = std::nan("");
  os << "{\n  \"gpu\": " << json_string(gpu) << ",\n  \"date\": " << json_string(iso_date_utc())
     << ",\n  \"commit\": " << json_string(commit) << ",\n  \"ceilings\": {\"copy_gbs\": "
     << json_number(ceilings.measured ? ceilings.copy_gbs : nan)
     << ", \"gemm_tflops\": " << json_number(ceilings.measured ? ceilings.gemm_tflops : nan)
     << ", \"gemm_sm_mhz\": " << json_number(ceilings.measured ? ceilings.gemm_sm_mhz : nan)
     << ", \"gemm_sustained_tflops\": "
     << json_number(ceilings.measured ? ceilings.gemm_sustained_tflops : nan)
     << ", \"gemm_sustained_sm_mhz\": "
     << json_number(ceilings.measured ? ceilings.gemm_sustained_sm_mhz : nan) << "},\n";
  if (end.measured) {
    os << "  \"ceilings_end\": {\"copy_gbs\": " << json_number(end.copy_gbs)
       << ", \"gemm_tflops\": " << json_number(end.gemm_tflops)
       << ", \"gemm_sm_mhz\": " << json_number(end.gemm_sm_mhz)
       << ", \"gemm_sustained_tflops\": " << json_number(end.gemm_sustained_tflops)
       << ", \"gemm_sustained_sm_mhz\": " << json_number(end.gemm_sustained_sm_mhz) << "},\n";
  }
  os << "  \"cases\": [";
  bool first = true;
  for (const Result& r : results) {
    if (r.skipped) continue;
    const Case& c = r.c;
    const bool timed = r.us > 0.0;
    os << (first ? "\n" : ",\n") << "    {\"kernel\": " << json_string(flash_mla::kernel_name(r.kernel))
       << ", \"dtype\": " << json_string(dtype_name(c.dtype)) << ", \"b\": " << c.batch
       << ", \"s_q\": " << c.seqlen_q << ", \"h_q\": " << c.heads_q << ", \"h_kv\": " << c.heads_kv
       << ", \"s_k\": " << c.seqlen_k << ", \"varlen\": " << static_cast<int>(c.lengths)
       << ", \"causal\": " << (c.causal ? "true" : "false")
       << ", \"us\": " << json_number(timed ? r.us : nan)
       << ", \"meta_us\": " << json_number(timed ? r.meta_us : nan)
       << ", \"tflops\": " << json_number(timed ? r.tflops : nan)
       << ", \"gbs\": " << json_number(timed ? r.gbs : nan)
       << ", \"pct_copy\": " << json_number(timed ? r.pct_copy : nan)
       << ", \"pct_gemm\": " << json_number(timed ? r.pct_gemm : nan)
       << ", \"sm_mhz\": " << json_number(timed ? r.sm_mhz : nan)
       << ", \"max_rel_err\": " << json_number(timed ? r.check.out_err : nan) << "}";
    first = false;
  }
  os << "\n  ]\n}\n";

  // Written whole to a temporary name and renamed, so a run stopped midway leaves the last
  // complete file behind.
  const std::string tmp = path + ".tmp";
  {
    std::ofstream f(tmp, std::ios::trunc);
    f << os.str();
    if (!f) {
      std::fprintf(stderr, "flash_mla_bench: cannot write %s\n", tmp.c_str());
      return;
    }
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0)
    std::fprintf(stderr, "flash_mla_bench: cannot rename %s to %s\n", tmp.c_str(), path.c_str());
}

}  // namespace bench
