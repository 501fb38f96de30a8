// Argument validation: everything decode() checks before launching anything.
#include <cmath>
#include <cstdio>
#include <cstdint>
#include <string>

#include "host/internal.h"

namespace flash_mla {
namespace detail {
namespace {

constexpr int kMaxRowsPerKvHead = 65535;  // combine grid.y = M
constexpr int kMaxHeadsKv = 16383;        // combine grid.z = 4 * h_kv <= 65535

bool aligned(const void* ptr, uintptr_t bytes) {
  return reinterpret_cast<uintptr_t>(ptr) % bytes == 0;
}

std::string ptr_str(const void* ptr) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%p", ptr);
  return buf;
}

Status check_stride(const char* field, int64_t stride) {
  if (stride < 0 || stride % 8 != 0) {
    return invalid(field, "a non-negative multiple of 8 elements (16-byte aligned rows)", stride);
  }
  return Status();
}

Status check_device_pointer(const char* field, const void* ptr, int device) {
  cudaPointerAttributes attr{};
  const cudaError_t err = cudaPointerGetAttributes(&attr, ptr);
  if (err != cudaSuccess) {
    cudaGetLastError();  // clear the non-sticky error so it is not reported by a later launch
    return invalid(field, "a device pointer on CUDA device " + std::to_string(device),
                   std::string("a pointer CUDA cannot resolve (") + cudaGetErrorName(err) + ")");
  }
  const bool on_device = attr.type == cudaMemoryTypeDevice || attr.type == cudaMemoryTypeManaged;
  if (!on_device) {
    const char* kind = attr.type == cudaMemoryTypeHost ? "pinned host memory" : "host memory";
    return invalid(field, "a device pointer on CUDA device " + std::to_string(device), kind);
  }
  if (attr.device != device) {
    return invalid(field, "a device pointer on CUDA device " + std::to_string(device),
                   "memory of CUDA device " + std::to_string(attr.device));
  }
  return Status();
}

}  // namespace

Status validate_num_sm_parts(int num_sm_parts) {
  if (num_sm_parts < 1 || num_sm_parts > kMaxNumSmParts) {
    return invalid("num_sm_parts", "1 to " + std::to_string(kMaxNumSmParts), num_sm_parts);
  }
  return Status();
}

Status validate_problem(const DecodeProblem& pr) {
  if (pr.dtype != DType::kBF16 && pr.dtype != DType::kFP16) {
    return invalid("dtype", "DType::kBF16 (0) or DType::kFP16 (1)", static_cast<int>(pr.dtype));
  }
  if (pr.kernel != KernelChoice::kAuto && pr.kernel != KernelChoice::kPortable &&
      pr.kernel != KernelChoice::kHopper) {
    return invalid("kernel", "KernelChoice::kAuto (0), kPortable (1) or kHopper (2)",
                   static_cast<int>(pr.kernel));
  }
  if (pr.batch < 1) return invalid("batch", "at least 1", pr.batch);
  if (pr.seqlen_q < 1) return invalid("seqlen_q", "at least 1", pr.seqlen_q);
  if (pr.num_heads_q < 1) return invalid("num_heads_q", "at least 1", pr.num_heads_q);
  if (pr.num_heads_kv < 1 || pr.num_heads_kv > kMaxHeadsKv) {
    return invalid("num_heads_kv", "between 1 and " + std::to_string(kMaxHeadsKv), pr.num_heads_kv);
  }
  if (pr.num_heads_q % pr.num_heads_kv != 0) {
    return invalid("num_heads_q % num_heads_kv",
                   "0 (num_heads_q a multiple of num_heads_kv = " +
                       std::to_string(pr.num_heads_kv) + ")",
                   std::to_string(pr.num_heads_q) + " % " + std::to_string(pr.num_heads_kv) +
                       " = " + std::to_string(pr.num_heads_q % pr.num_heads_kv));
  }
  const int64_t rows = int64_t(pr.seqlen_q) * (pr.num_heads_q / pr.num_heads_kv);
  if (rows > kMaxRowsPerKvHead) {
    return invalid("seqlen_q * num_heads_q / num_heads_kv",
                   "at most " + std::to_string(kMaxRowsPerKvHead), rows);
  }
  if (pr.head_dim != kHeadDim) return invalid("head_dim", std::to_string(kHeadDim), pr.head_dim);
  if (pr.head_dim_v != kHeadDimV) {
    return invalid("head_dim_v", std::to_string(kHeadDimV), pr.head_dim_v);
  }
  if (pr.page_block_size != kPageBlockSize) {
    return invalid("page_block_size", std::to_string(kPageBlockSize), pr.page_block_size);
  }
  if (pr.num_blocks < 1) return invalid("num_blocks", "at least 1", pr.num_blocks);
  if (pr.max_blocks_per_seq < 1) {
    return invalid("max_blocks_per_seq", "at least 1", pr.max_blocks_per_seq);
  }
  if (pr.softmax_scale && !std::isfinite(*pr.softmax_scale)) {
    return invalid("softmax_scale", "a finite value (or unset for 1/sqrt(head_dim))",
                   *pr.softmax_scale);
  }
  return Status();
}

}  // namespace detail

Status validate(const DecodeProblem& pr, const DecodeArgs& a, bool check_pointers) {
  using detail::invalid;
  if (Status s = detail::validate_problem(pr); !s.ok()) return s;

  struct Ptr { const char* field; const void* ptr; uintptr_t align; };
  const Ptr ptrs[] = {
      {"q", a.q, 16},
      {"k_cache", a.k_cache, 16},
      {"block_table", a.block_table, 4},
      {"cache_seqlens", a.cache_seqlens, 4},
      {"tile_scheduler_metadata", a.tile_scheduler_metadata, 4},
      {"num_splits", a.num_splits, 4},
      {"out", a.out, 16},
      {"lse", a.lse, 4},
  };
  for (const Ptr& p : ptrs) {
    if (p.ptr == nullptr) return invalid(p.field, "a non-null device pointer", "nullptr");
    if (!detail::aligned(p.ptr, p.align)) {
      return invalid(p.field, std::to_string(p.align) + "-byte alignment", detail::ptr_str(p.ptr));
    }
  }

  struct Stride { const char* field; int64_t value; };
  const Stride strides[] = {
      {"q_batch_stride", a.q_batch_stride}, {"q_seq_stride", a.q_seq_stride},
      {"q_head_stride", a.q_head_stride}, {"k_block_stride", a.k_block_stride},
      {"k_token_stride", a.k_token_stride}, {"k_head_stride", a.k_head_stride},
      {"out_batch_stride", a.out_batch_stride}, {"out_seq_stride", a.out_seq_stride},
      {"out_head_stride", a.out_head_stride},
  };
  for (const Stride& s : strides) {
    if (Status st = detail::check_stride(s.field, s.value); !st.ok()) return st;
  }
  const Stride lse_strides[] = {{"lse_batch_stride", a.lse_batch_stride},
                                {"lse_head_stride", a.lse_head_stride},
                                {"lse_seq_stride", a.lse_seq_stride}};
  for (const Stride& s : lse_strides) {
    if (s.value < 0) return invalid(s.field, "a non-negative stride", s.value);
  }
  if (a.block_table_batch_stride < pr.max_blocks_per_seq) {
    return invalid("block_table_batch_stride",
                   "at least max_blocks_per_seq = " + std::to_string(pr.max_blocks_per_seq),
                   a.block_table_batch_stride);
  }

  if (Status s = detail::validate_num_sm_parts(a.num_sm_parts); !s.ok()) return s;
  if (a.metadata_batch != pr.batch) {
    return invalid("metadata_batch",
                   "the batch of this call, " + std::to_string(pr.batch) +
                       " (metadata computed for another batch)",
                   a.metadata_batch);
  }
  const size_t need =
      detail::workspace_bytes(pr.rows_per_kv_head(), pr.num_heads_kv, a.num_sm_parts);
  if (need > 0 && a.workspace == nullptr) {
    return invalid("workspace", "a device buffer of " + std::to_string(need) + " bytes",
                   "nullptr");
  }
  if (a.workspace_bytes < need) {
    return Status(StatusCode::kWorkspaceTooSmall,
                  "workspace_bytes: expected at least " + std::to_string(need) +
                      " (get_workspace_size for num_sm_parts = " +
                      std::to_string(a.num_sm_parts) + "), got " +
                      std::to_string(a.workspace_bytes));
  }
  if (a.workspace != nullptr && !detail::aligned(a.workspace, 16)) {
    return invalid("workspace", "16-byte alignment", detail::ptr_str(a.workspace));
  }

  if (check_pointers) {
    int device = -1;
    if (cudaError_t err = cudaGetDevice(&device); err != cudaSuccess) {
      return detail::cuda_failure("cudaGetDevice", err);
    }
    for (const Ptr& p : ptrs) {
      if (Status s = detail::check_device_pointer(p.field, p.ptr, device); !s.ok()) return s;
    }
    if (a.workspace != nullptr) {
      if (Status s = detail::check_device_pointer("workspace", a.workspace, device); !s.ok()) {
        return s;
      }
    }
  }
  return Status();
}

}  // namespace flash_mla
