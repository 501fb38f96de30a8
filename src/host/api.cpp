// The public calls: device facts, planning, workspace, metadata and decode.
#include <algorithm>
#include <array>
#include <cstdlib>
#include <cmath>
#include <mutex>

#include "host/internal.h"
#include "kernels/sm80/config.h"
#include "kernels/sm80/launch.h"
#include "kernels/sm90/config.h"
#include "kernels/sm90/launch.h"
#include "scheduler/metadata.h"

namespace flash_mla {
namespace detail {

cudaError_t portable_occupancy(int row_groups, int stages, int* ctas_per_sm);  // dispatch.cu
cudaError_t combine_adaptive_occupancy(int* ctas_per_sm);                      // dispatch.cu

namespace {

constexpr int kMaxDevices = 64;
// kAuto on sm_90: the Hopper kernel from this many query rows per KV head up. Hopper v4
// (S computed once per page) matched or beat the portable kernel at 16 rows too on an H200
// (2026-11-21: 81.9-94.0% of copy against 77.5-96.4%; v1 had been slower there).
constexpr int kHopperMinRows = 1;
constexpr int kRowGroupChoices[] = {1, 2};
// Stage limits do not depend on the row-group count; read them off one configuration.
using StageLimits = sm80::PortableConfig<1>;
constexpr int kMinStages = StageLimits::kMinStages;

struct CachedDevice {
  bool ready = false;
  DeviceInfo info;
  int occupancy[3] = {};  // indexed by row groups (1, 2); 0: the configuration does not fit
  int stages[3] = {};
};

// KV stages to ask for: the default, or the tuning override FLASH_MLA_PORTABLE_MAX_STAGES
// (kMinStages..kMaxStages) for experiments; the caller lowers it to what fits.
int stages_setting() {
  if (const char* env = std::getenv("FLASH_MLA_PORTABLE_MAX_STAGES")) {
    const int v = std::atoi(env);
    if (v >= kMinStages && v <= StageLimits::kMaxStages) return v;
  }
  return StageLimits::kDefaultStages;
}

std::mutex g_device_mutex;
std::array<CachedDevice, kMaxDevices> g_devices;

constexpr size_t align_up(size_t x, size_t a) { return (x + a - 1) / a * a; }

}  // namespace

Status current_device_info(DeviceInfo* info) {
  int device = -1;
  if (cudaError_t err = cudaGetDevice(&device); err != cudaSuccess) {
    cudaGetLastError();
    return Status(StatusCode::kNotSupported,
                  std::string("no usable CUDA device: ") + cudaGetErrorString(err));
  }
  if (device < 0 || device >= kMaxDevices) {
    return Status(StatusCode::kNotSupported, "CUDA device index " + std::to_string(device) +
                                                 " beyond the " + std::to_string(kMaxDevices) +
                                                 " this library tracks");
  }
  std::lock_guard<std::mutex> lock(g_device_mutex);
  CachedDevice& cached = g_devices[device];
  if (!cached.ready) {
    DeviceInfo d;
    d.device = device;
    int smem_optin = 0;
    cudaError_t err = cudaDeviceGetAttribute(&d.major, cudaDevAttrComputeCapabilityMajor, device);
    if (err == cudaSuccess) err = cudaDeviceGetAttribute(&d.minor, cudaDevAttrComputeCapabilityMinor, device);
    if (err == cudaSuccess) err = cudaDeviceGetAttribute(&d.num_sms, cudaDevAttrMultiProcessorCount, device);
    if (err == cudaSuccess) err = cudaDeviceGetAttribute(&smem_optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, device);
    if (err != cudaSuccess) return cuda_failure("cudaDeviceGetAttribute", err);
    d.smem_optin = static_cast<size_t>(smem_optin);
    d.hopper = d.major == 9 && sm90::hopper_kernel_available();
    if (d.major >= 8) {
      for (int r : kRowGroupChoices) {
        int stages = stages_setting();
        while (stages >= kMinStages && sm80::portable_decode_smem_bytes(r, stages) > d.smem_optin) {
          --stages;
        }
        if (stages < kMinStages) continue;
        int ctas = 0;
        err = portable_occupancy(r, stages, &ctas);
        if (err != cudaSuccess) {
          return cuda_failure("occupancy query of the portable kernel", err);
        }
        cached.occupancy[r] = ctas;
        cached.stages[r] = stages;
      }
      int ctas = 0;
      err = combine_adaptive_occupancy(&ctas);
      if (err != cudaSuccess) {
        return cuda_failure("occupancy query of the combine kernel", err);
      }
      d.combine_adaptive_wave = ctas * d.num_sms;
    }
    cached.info = d;
    cached.ready = true;
  }
  *info = cached.info;
  return Status();
}

// kAuto uses the Hopper kernel where it exists and is the faster one (kHopperMinRows).
Status plan_kernel(const DeviceInfo& dev, int rows_per_kv, KernelChoice kernel,
                   KernelPlan* plan) {
  const bool hopper_ok = dev.hopper;
  bool auto_hopper = hopper_ok && rows_per_kv >= kHopperMinRows;
  if (const char* env = std::getenv("FLASH_MLA_KERNEL")) {  // what kAuto means, for testing
    if (std::string(env) == "portable") auto_hopper = false;
    if (std::string(env) == "hopper") auto_hopper = true;
  }
  const bool use_hopper = kernel == KernelChoice::kHopper ||
                          (kernel == KernelChoice::kAuto && auto_hopper);
  if (!use_hopper) return plan_portable(dev, rows_per_kv, plan);
  if (!hopper_ok) {
    return Status(StatusCode::kNotSupported,
                  "kernel: the Hopper kernel needs compute capability 9.0 and sm_90a code in "
                  "this build; device " + std::to_string(dev.device) + " has " +
                      std::to_string(dev.major) + "." + std::to_string(dev.minor));
  }
  if (dev.smem_optin < sm90::HopperConfig::kSmemBytes) {
    return Status(StatusCode::kNotSupported,
                  "the Hopper kernel needs " + std::to_string(sm90::HopperConfig::kSmemBytes) +
                      " bytes of shared memory per CTA; device " + std::to_string(dev.device) +
                      " allows " + std::to_string(dev.smem_optin));
  }
  plan->hopper = true;
  plan->row_groups = 0;
  // At most 16 rows: the narrow kernel (query rows along the wgmma N, no padding to 64); the
  // wide one was 3-7% slower there with batches of 8 to 64 sequences. From 17 rows the wide
  // kernel, padding included, was the faster one on the H100 and the H200 in every case
  // measured (docs/perf-notes.md, "The wide kernel from 17 rows").
  // FLASH_MLA_HOPPER_NARROW=0 keeps the wide kernel, for comparison and its tests.
  const char* narrow_env = std::getenv("FLASH_MLA_HOPPER_NARROW");
  const bool narrow_on = narrow_env == nullptr || std::string(narrow_env) != "0";
  using Narrow = sm90::NarrowConfig<sm90::kNarrowRows>;
  if (narrow_on && rows_per_kv <= sm90::kNarrowRows && dev.smem_optin >= Narrow::kSmemBytes) {
    plan->narrow_rows = sm90::kNarrowRows;
    plan->block_m = sm90::kNarrowRows;
    plan->m_blocks = 1;
    plan->ctas_per_sm = 1;
    plan->stages = Narrow::kSlots;
    return Status();
  }
  plan->narrow_rows = 0;
  plan->block_m = sm90::HopperConfig::kBlockM;
  plan->m_blocks = (rows_per_kv + plan->block_m - 1) / plan->block_m;
  plan->ctas_per_sm = 1;
  plan->stages = sm90::HopperConfig::kStages;
  return Status();
}

Status plan_portable(const DeviceInfo& dev, int rows_per_kv, KernelPlan* plan) {
  plan->hopper = false;
  if (dev.major < 8) {
    return Status(StatusCode::kNotSupported,
                  "the portable kernel needs compute capability 8.0 or newer, device " +
                      std::to_string(dev.device) + " has " + std::to_string(dev.major) + "." +
                      std::to_string(dev.minor));
  }
  // 32 rows per CTA at most: 64 (512 threads, one CTA per SM, registers capped at 128 with
  // spills) measured 7% slower than 32 rows with two CTAs per SM (docs/perf-notes.md, v2).
  int row_groups = rows_per_kv <= 16 ? 1 : 2;
  // Tuning override for experiments: FLASH_MLA_PORTABLE_ROW_GROUPS=1 caps a CTA at 16 rows.
  if (const char* env = std::getenv("FLASH_MLA_PORTABLE_ROW_GROUPS")) {
    if (std::atoi(env) == 1) row_groups = 1;
  }
  int ctas = 0, stages = 0;
  {
    std::lock_guard<std::mutex> lock(g_device_mutex);
    while (row_groups > 1 && g_devices[dev.device].occupancy[row_groups] == 0) row_groups /= 2;
    ctas = g_devices[dev.device].occupancy[row_groups];
    stages = g_devices[dev.device].stages[row_groups];
  }
  if (ctas == 0) {
    return Status(StatusCode::kNotSupported,
                  "the portable kernel needs " +
                      std::to_string(sm80::portable_decode_smem_bytes(1, kMinStages)) +
                      " bytes of shared memory per CTA; device " + std::to_string(dev.device) +
                      " allows " + std::to_string(dev.smem_optin));
  }
  plan->row_groups = row_groups;
  plan->block_m = 16 * row_groups;
  plan->m_blocks = (rows_per_kv + plan->block_m - 1) / plan->block_m;
  plan->ctas_per_sm = ctas;
  plan->stages = stages;
  return Status();
}

int num_workspace_slots(int num_sm_parts) { return 2 * num_sm_parts; }

size_t workspace_bytes(int rows_per_kv, int num_heads_kv, int num_sm_parts) {
  const size_t rows = size_t(num_workspace_slots(num_sm_parts)) * num_heads_kv * rows_per_kv;
  return align_up(rows * kHeadDimV * sizeof(float), 256) + align_up(rows * sizeof(float), 256);
}

void workspace_layout(void* workspace, int rows_per_kv, int num_heads_kv, int num_sm_parts,
                      float** o_accum, float** lse_accum) {
  const size_t rows = size_t(num_workspace_slots(num_sm_parts)) * num_heads_kv * rows_per_kv;
  char* base = static_cast<char*>(workspace);
  *o_accum = reinterpret_cast<float*>(base);
  *lse_accum = reinterpret_cast<float*>(base + align_up(rows * kHeadDimV * sizeof(float), 256));
}

}  // namespace detail

const char* status_code_name(StatusCode code) {
  switch (code) {
    case StatusCode::kOk: return "ok";
    case StatusCode::kInvalidArgument: return "invalid argument";
    case StatusCode::kNotSupported: return "not supported";
    case StatusCode::kWorkspaceTooSmall: return "workspace too small";
    case StatusCode::kCudaError: return "CUDA error";
  }
  return "unknown status";
}

const char* kernel_name(KernelChoice choice) {
  switch (choice) {
    case KernelChoice::kAuto: return "auto";
    case KernelChoice::kPortable: return "portable";
    case KernelChoice::kHopper: return "hopper";
  }
  return "unknown";
}

void set_contiguous_strides(const DecodeProblem& pr, DecodeArgs& a) {
  a.q_head_stride = pr.head_dim;
  a.q_seq_stride = int64_t(pr.num_heads_q) * pr.head_dim;
  a.q_batch_stride = int64_t(pr.seqlen_q) * a.q_seq_stride;
  a.k_head_stride = pr.head_dim;
  a.k_token_stride = int64_t(pr.num_heads_kv) * pr.head_dim;
  a.k_block_stride = int64_t(pr.page_block_size) * a.k_token_stride;
  a.block_table_batch_stride = pr.max_blocks_per_seq;
  a.out_head_stride = pr.head_dim_v;
  a.out_seq_stride = int64_t(pr.num_heads_q) * pr.head_dim_v;
  a.out_batch_stride = int64_t(pr.seqlen_q) * a.out_seq_stride;
  a.lse_seq_stride = 1;
  a.lse_head_stride = pr.seqlen_q;
  a.lse_batch_stride = int64_t(pr.num_heads_q) * pr.seqlen_q;
}

Status get_num_sm_parts(int rows_per_kv_head, int num_heads_kv, KernelChoice kernel,
                        int* num_sm_parts) {
  using detail::invalid;
  if (num_sm_parts == nullptr) return invalid("num_sm_parts", "a non-null pointer", "nullptr");
  if (rows_per_kv_head < 1) return invalid("rows_per_kv_head", "at least 1", rows_per_kv_head);
  if (num_heads_kv < 1) return invalid("num_heads_kv", "at least 1", num_heads_kv);
  if (kernel != KernelChoice::kAuto && kernel != KernelChoice::kPortable &&
      kernel != KernelChoice::kHopper) {
    return invalid("kernel", "KernelChoice::kAuto (0), kPortable (1) or kHopper (2)",
                   static_cast<int>(kernel));
  }
  detail::DeviceInfo dev;
  if (Status s = detail::current_device_info(&dev); !s.ok()) return s;
  detail::KernelPlan plan;
  if (Status s = detail::plan_kernel(dev, rows_per_kv_head, kernel, &plan); !s.ok()) return s;
  const int64_t slots = int64_t(dev.num_sms) * plan.ctas_per_sm;
  const int64_t per_part = int64_t(num_heads_kv) * plan.m_blocks;
  *num_sm_parts = static_cast<int>(std::max<int64_t>(1, slots / per_part));
  return Status();
}

Status get_workspace_size(const DecodeProblem& problem, int num_sm_parts, size_t* bytes) {
  using detail::invalid;
  if (bytes == nullptr) return invalid("bytes", "a non-null pointer", "nullptr");
  if (Status s = detail::validate_problem(problem); !s.ok()) return s;
  if (Status s = detail::validate_num_sm_parts(num_sm_parts); !s.ok()) return s;
  *bytes = detail::workspace_bytes(problem.rows_per_kv_head(), problem.num_heads_kv, num_sm_parts);
  return Status();
}

Status compute_metadata(const int32_t* cache_seqlens, int batch, int rows_per_kv_head,
                        int num_heads_kv, int32_t* tile_scheduler_metadata, int num_sm_parts,
                        int32_t* num_splits, cudaStream_t stream) {
  using detail::invalid;
  if (cache_seqlens == nullptr) return invalid("cache_seqlens", "a non-null device pointer", "nullptr");
  if (tile_scheduler_metadata == nullptr) {
    return invalid("tile_scheduler_metadata", "a non-null device pointer", "nullptr");
  }
  if (num_splits == nullptr) return invalid("num_splits", "a non-null device pointer", "nullptr");
  if (batch < 1) return invalid("batch", "at least 1", batch);
  if (rows_per_kv_head < 1) return invalid("rows_per_kv_head", "at least 1", rows_per_kv_head);
  if (num_heads_kv < 1) return invalid("num_heads_kv", "at least 1", num_heads_kv);
  if (Status s = detail::validate_num_sm_parts(num_sm_parts); !s.ok()) return s;
  // The schedule depends on the lengths, the number of parts and the rows per KV head (the
  // fixed cost per sequence and the width, scheduler/schedule.h); num_heads_kv is checked for
  // consistency only.
  if (cudaError_t err = detail::launch_metadata_kernel(cache_seqlens, batch, rows_per_kv_head,
                                                       num_sm_parts, tile_scheduler_metadata,
                                                       num_splits, stream);
      err != cudaSuccess) {
    return detail::cuda_failure("metadata kernel launch", err);
  }
  return Status();
}

Status decode(const DecodeProblem& pr, const DecodeArgs& a, cudaStream_t stream) {
  if (Status s = validate(pr, a, /*check_pointers=*/true); !s.ok()) return s;
  detail::DeviceInfo dev;
  if (Status s = detail::current_device_info(&dev); !s.ok()) return s;
  detail::KernelPlan plan;
  if (Status s = detail::plan_kernel(dev, pr.rows_per_kv_head(), pr.kernel, &plan); !s.ok()) {
    return s;
  }

  DecodeParams p{};
  p.batch = pr.batch;
  p.seqlen_q = pr.seqlen_q;
  p.num_heads_q = pr.num_heads_q;
  p.num_heads_kv = pr.num_heads_kv;
  p.heads_per_kv = pr.num_heads_q / pr.num_heads_kv;
  p.rows_per_kv = pr.rows_per_kv_head();
  p.max_blocks_per_seq = pr.max_blocks_per_seq;
  p.causal = pr.causal;
  const float scale = pr.softmax_scale ? *pr.softmax_scale : 1.0f / std::sqrt(float(pr.head_dim));
  p.scale_log2 = scale * 1.4426950408889634f;  // log2(e)
  p.q = a.q;
  p.q_batch_stride = a.q_batch_stride;
  p.q_seq_stride = a.q_seq_stride;
  p.q_head_stride = a.q_head_stride;
  p.k_cache = a.k_cache;
  p.k_block_stride = a.k_block_stride;
  p.k_token_stride = a.k_token_stride;
  p.k_head_stride = a.k_head_stride;
  p.num_blocks = pr.num_blocks;
  p.block_table = a.block_table;
  p.block_table_batch_stride = a.block_table_batch_stride;
  p.cache_seqlens = a.cache_seqlens;
  p.metadata = a.tile_scheduler_metadata;
  p.num_sm_parts = a.num_sm_parts;
  p.num_splits = a.num_splits;
  p.out = a.out;
  p.out_batch_stride = a.out_batch_stride;
  p.out_seq_stride = a.out_seq_stride;
  p.out_head_stride = a.out_head_stride;
  p.lse = a.lse;
  p.lse_batch_stride = a.lse_batch_stride;
  p.lse_head_stride = a.lse_head_stride;
  p.lse_seq_stride = a.lse_seq_stride;
  detail::workspace_layout(a.workspace, p.rows_per_kv, p.num_heads_kv, a.num_sm_parts,
                           &p.o_accum, &p.lse_accum);
  p.num_slots = detail::num_workspace_slots(a.num_sm_parts);

  // The Hopper kernel reads the KV cache through a TMA tensor map; a layout no tensor map can
  // describe (a zero stride) goes to the portable kernel unless the caller insisted.
  if (plan.hopper && !sm90::kv_layout_supported(p)) {
    if (pr.kernel == KernelChoice::kHopper) {
      return Status(StatusCode::kNotSupported,
                    "k_cache strides: the Hopper kernel needs non-zero strides for dimensions "
                    "of more than one element (TMA), got a zero stride");
    }
    if (Status s = detail::plan_portable(dev, pr.rows_per_kv_head(), &plan); !s.ok()) return s;
  }
  p.kv_stages = plan.stages;
  if (plan.hopper) {
    if (cudaError_t err = detail::launch_hopper(pr.dtype, p, plan, stream); err != cudaSuccess) {
      return detail::cuda_failure("Hopper decode kernel launch", err);
    }
  } else if (cudaError_t err = detail::launch_portable(pr.dtype, p, plan, stream);
             err != cudaSuccess) {
    return detail::cuda_failure("portable decode kernel launch", err);
  }
  // After a Hopper split kernel the combine kernel is its programmatic dependent: its launch
  // overlaps the split kernel's end (both kernels order their reads with griddepcontrol).
  if (cudaError_t err = detail::launch_combine(pr.dtype, p, dev, plan.hopper, stream);
      err != cudaSuccess) {
    return detail::cuda_failure("combine kernel launch", err);
  }
  return Status();
}

Status is_supported(int device) {
  int count = 0;
  if (cudaError_t err = cudaGetDeviceCount(&count); err != cudaSuccess) {
    cudaGetLastError();
    return Status(StatusCode::kNotSupported, std::string("no CUDA device: ") + cudaGetErrorString(err));
  }
  if (device < 0 || device >= count) {
    return detail::invalid("device", "an index below the device count " + std::to_string(count),
                           device);
  }
  int major = 0, minor = 0;
  cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device);
  cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, device);
  if (major < 8) {
    return Status(StatusCode::kNotSupported,
                  "compute capability " + std::to_string(major) + "." + std::to_string(minor) +
                      " is below the 8.0 the portable kernel needs");
  }
  return Status();
}

}  // namespace flash_mla
