// Command line, case lists (the SPEC §6 sweep, --quick, --extra, --case) and sequence lengths.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <sstream>
#include <stdexcept>

#include "bench_common.h"

#ifndef FLASH_MLA_GIT_COMMIT
#define FLASH_MLA_GIT_COMMIT "unknown"
#endif

namespace bench {
namespace {

using flash_mla::DType;
using flash_mla::KernelChoice;

// Every value of KernelChoice, for --kernel all. Keep in step with include/flash_mla/flash_mla.h.
constexpr KernelChoice kAllKernels[] = {KernelChoice::kAuto, KernelChoice::kPortable,
                                        KernelChoice::kHopper};

void usage(const char* argv0) {
  std::printf(
      "usage: %s [cases] [options]\n"
      "cases (several may be combined; default --sweep):\n"
      "  --sweep            SPEC section 6 sweep: b=128, s_k 4096..32768, h_q 16..128, s_q 1|2,\n"
      "                     fixed and normal lengths, h_kv=1, causal, bf16 and fp16 (128 cases)\n"
      "  --quick            a handful of small cases (smoke run, sanitizers)\n"
      "  --extra            FlashMLA's weak spots: one 128K sequence, one 1K sequence, 31x1K+64K\n"
      "  --case SPEC        b=..,s_q=..,h_q=..,h_kv=..,s_k=..,varlen=0|1|2,causal=0|1,\n"
      "                     dtype=bf16|fp16[,long=N]  (repeatable; varlen=2: b-1 sequences of\n"
      "                     s_k tokens and one of `long` tokens, default 64*s_k)\n"
      "options:\n"
      "  --kernel K         auto|portable|hopper|all (default auto)\n"
      "  --reps N           timed repetitions per case, median reported (default 50)\n"
      "  --warmup N         untimed runs before timing (default 10)\n"
      "  --verify-rows N    output rows checked against the float64 reference (default 8)\n"
      "  --seed N           seed of lengths, data and block tables (default 2025)\n"
      "  --json PATH        write the results as JSON\n"
      "  --commit STR       commit recorded in the JSON (default: configure-time git HEAD)\n"
      "  --no-ceilings      skip the copy / GEMM ceilings (for sanitizer runs)\n"
      "  --settle-ms N      idle time after the ceilings, for the SM clock to recover (default 1000)\n"
      "  --l2-persist-mb N  set aside N MiB of L2 for persisting (EVICT_LAST) accesses, capped at\n"
      "                     the device's maximum (default: leave the device's setting)\n",
      argv0);
}

[[noreturn]] void bad_arg(const char* argv0, const std::string& what) {
  std::fprintf(stderr, "flash_mla_bench: %s\n", what.c_str());
  usage(argv0);
  std::exit(2);
}

int to_int(const std::string& s, const std::string& what) {
  try {
    size_t used = 0;
    const long long v = std::stoll(s, &used);
    if (used != s.size() || v < INT32_MIN || v > INT32_MAX) throw std::invalid_argument(s);
    return static_cast<int>(v);
  } catch (const std::exception&) {
    throw std::invalid_argument(what + ": expected an integer, got '" + s + "'");
  }
}

Case parse_case(const std::string& spec) {
  Case c;
  c.batch = 1;
  std::stringstream ss(spec);
  std::string item;
  bool long_given = false;
  while (std::getline(ss, item, ',')) {
    const size_t eq = item.find('=');
    if (eq == std::string::npos) throw std::invalid_argument("--case: '" + item + "' is not key=value");
    const std::string key = item.substr(0, eq), val = item.substr(eq + 1);
    if (key == "b") c.batch = to_int(val, key);
    else if (key == "s_q") c.seqlen_q = to_int(val, key);
    else if (key == "h_q") c.heads_q = to_int(val, key);
    else if (key == "h_kv") c.heads_kv = to_int(val, key);
    else if (key == "s_k") c.seqlen_k = to_int(val, key);
    else if (key == "long") { c.long_len = to_int(val, key); long_given = true; }
    else if (key == "causal") c.causal = to_int(val, key) != 0;
    else if (key == "varlen") {
      const int v = to_int(val, key);
      if (v < 0 || v > 2) throw std::invalid_argument("--case: varlen must be 0, 1 or 2");
      c.lengths = static_cast<Lengths>(v);
    } else if (key == "dtype") {
      if (val == "bf16") c.dtype = DType::kBF16;
      else if (val == "fp16") c.dtype = DType::kFP16;
      else throw std::invalid_argument("--case: dtype must be bf16 or fp16, got '" + val + "'");
    } else {
      throw std::invalid_argument("--case: unknown key '" + key + "'");
    }
  }
  if (c.lengths == Lengths::kOneLong && !long_given) c.long_len = 64 * c.seqlen_k;
  if (c.batch < 1 || c.seqlen_q < 1 || c.heads_q < 1 || c.heads_kv < 1 || c.seqlen_k < 0 ||
      c.long_len < 0)
    throw std::invalid_argument("--case '" + spec + "': sizes must be positive (s_k >= 0)");
  // Checked here too (the library rejects it as well) because the reference divides by it.
  if (c.heads_q % c.heads_kv != 0)
    throw std::invalid_argument("--case '" + spec + "': h_q must be a multiple of h_kv");
  return c;
}

// The sweep ordered so that consecutive cases share one KV pool (dtype, s_k, lengths outer).
void add_sweep(std::vector<Case>& cases) {
  for (DType dtype : {DType::kBF16, DType::kFP16})
    for (int s_k : {4096, 8192, 16384, 32768})
      for (Lengths lengths : {Lengths::kFixed, Lengths::kNormal})
        for (int h_q : {16, 32, 64, 128})
          for (int s_q : {1, 2}) {
            Case c;
            c.dtype = dtype;
            c.batch = 128;
            c.seqlen_q = s_q;
            c.heads_q = h_q;
            c.heads_kv = 1;
            c.seqlen_k = s_k;
            c.lengths = lengths;
            c.causal = true;
            cases.push_back(c);
          }
}

// Small problems covering both dtypes, MTP, h_kv > 1, ragged lengths, a length that is not a
// page multiple and rows with no valid key (L = 1 < s_q): quick enough for compute-sanitizer.
void add_quick(std::vector<Case>& cases) {
  for (const char* spec : {
           "b=4,s_q=1,h_q=16,s_k=1024,varlen=1,dtype=bf16",
           "b=4,s_q=2,h_q=64,s_k=1000,varlen=0,dtype=bf16",
           "b=3,s_q=2,h_q=128,s_k=777,varlen=1,dtype=fp16",
           "b=2,s_q=1,h_q=128,h_kv=2,s_k=300,varlen=0,dtype=bf16",
           "b=2,s_q=2,h_q=16,s_k=1,varlen=0,dtype=fp16",
           "b=5,s_q=1,h_q=16,s_k=200,varlen=2,long=5000,dtype=bf16",
       })
    cases.push_back(parse_case(spec));
}

// SPEC §6's weak spots of the 2025-04 FlashMLA kernel.
void add_extra(std::vector<Case>& cases) {
  for (const char* spec : {
           "b=1,s_q=1,h_q=16,s_k=131072,varlen=0,dtype=bf16",
           "b=1,s_q=1,h_q=16,s_k=1024,varlen=0,dtype=bf16",
           "b=32,s_q=1,h_q=16,s_k=1024,varlen=2,long=65536,dtype=bf16",
       })
    cases.push_back(parse_case(spec));
}

}  // namespace

const char* dtype_name(DType dtype) { return dtype == DType::kFP16 ? "fp16" : "bf16"; }

std::string describe(const Case& c) {
  std::ostringstream os;
  os << dtype_name(c.dtype) << " b=" << c.batch << " s_q=" << c.seqlen_q << " h_q=" << c.heads_q
     << " h_kv=" << c.heads_kv << " s_k=" << c.seqlen_k << " varlen=" << static_cast<int>(c.lengths);
  if (c.lengths == Lengths::kOneLong) os << " long=" << c.long_len;
  os << " causal=" << (c.causal ? 1 : 0);
  return os.str();
}

std::vector<int> raw_seqlens(const Case& c, uint64_t seed) {
  std::vector<int> len(c.batch, c.seqlen_k);
  // Seeded by the pattern alone, so every case of one pool sees the same lengths.
  std::mt19937_64 rng(seed * 0x9E3779B97F4A7C15ull + static_cast<uint64_t>(c.seqlen_k) * 31 +
                      static_cast<uint64_t>(c.batch) * 7 + static_cast<uint64_t>(c.lengths));
  if (c.lengths == Lengths::kNormal) {
    std::normal_distribution<double> normal(c.seqlen_k, c.seqlen_k / 2.0);
    // Python's int(max(x, s_q)) truncates toward zero; the clamp to s_q happens per case.
    for (int& l : len) l = std::max(0, static_cast<int>(normal(rng)));
  } else if (c.lengths == Lengths::kOneLong) {
    len[std::uniform_int_distribution<int>(0, c.batch - 1)(rng)] = c.long_len;
  }
  return len;
}

Options parse_args(int argc, char** argv) {
  Options opt;
  opt.commit = FLASH_MLA_GIT_COMMIT;
  bool sweep = false, quick = false, extra = false;
  std::vector<Case> custom;
  std::string kernel = "auto";
  try {
    for (int a = 1; a < argc; ++a) {
      const std::string arg = argv[a];
      auto value = [&]() -> std::string {
        if (a + 1 >= argc) throw std::invalid_argument(arg + " needs a value");
        return argv[++a];
      };
      if (arg == "--help" || arg == "-h") { usage(argv[0]); std::exit(0); }
      else if (arg == "--sweep") sweep = true;
      else if (arg == "--quick") quick = true;
      else if (arg == "--extra") extra = true;
      else if (arg == "--case") custom.push_back(parse_case(value()));
      else if (arg == "--kernel") kernel = value();
      else if (arg == "--reps") opt.reps = to_int(value(), arg);
      else if (arg == "--warmup") opt.warmup = to_int(value(), arg);
      else if (arg == "--verify-rows") opt.verify_rows = to_int(value(), arg);
      else if (arg == "--seed") opt.seed = static_cast<uint64_t>(std::stoull(value()));
      else if (arg == "--json") opt.json_path = value();
      else if (arg == "--commit") opt.commit = value();
      else if (arg == "--no-ceilings") opt.measure_ceilings = false;
      else if (arg == "--settle-ms") opt.settle_ms = to_int(value(), arg);
      else if (arg == "--l2-persist-mb") opt.l2_persist_mb = to_int(value(), arg);
      else throw std::invalid_argument("unknown argument '" + arg + "'");
    }
    if (opt.reps < 1 || opt.warmup < 0 || opt.verify_rows < 1 || opt.settle_ms < 0 ||
        (opt.l2_persist_mb < 0 && opt.l2_persist_mb != -1))
      throw std::invalid_argument(
          "--reps and --verify-rows must be >= 1, --warmup, --settle-ms and --l2-persist-mb >= 0");
  } catch (const std::exception& e) {
    bad_arg(argv[0], e.what());
  }

  if (kernel == "all") {
    opt.kernels.assign(std::begin(kAllKernels), std::end(kAllKernels));
  } else {
    for (KernelChoice k : kAllKernels)
      if (kernel == flash_mla::kernel_name(k)) opt.kernels.push_back(k);
    if (opt.kernels.empty()) bad_arg(argv[0], "--kernel: unknown kernel '" + kernel + "'");
  }

  if (!sweep && !quick && !extra && custom.empty()) sweep = true;
  if (quick) add_quick(opt.cases);
  if (sweep) add_sweep(opt.cases);
  if (extra) add_extra(opt.cases);
  opt.cases.insert(opt.cases.end(), custom.begin(), custom.end());
  return opt;
}

}  // namespace bench
