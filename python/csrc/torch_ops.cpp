// PyTorch binding of the flash_mla C++ library: the ops of the `flash_mla` namespace, built
// against the LibTorch stable ABI (torch/csrc/stable, target 2.10) so one binary serves
// PyTorch 2.10 and later. This file only turns tensors into the library's plain structs:
// the library validates everything it can see, and this file checks what only a tensor
// carries (rank, dtype, device, the shapes that tie arguments together). Errors leave as
// std::runtime_error (PyTorch turns them into RuntimeError) whose message names the argument,
// the expectation and what was received. The Python layer (flash_mla/interface.py) repeats
// the tensor checks to raise TypeError/ValueError before the op is reached.
//
// Ops (schemas in STABLE_TORCH_LIBRARY below):
//   get_mla_metadata      cache_seqlens -> (tile_scheduler_metadata [P, 8], num_splits [b + 1])
//   get_mla_metadata_out  the same, into caller buffers (CUDA-graph replays recompute in place)
//   fwd_kvcache           -> (out [b, s_q, h_q, 512], lse [b, h_q, s_q] fp32)
// Plus two C functions for Python's ctypes (no tensors, so usable from fake implementations):
//   flash_mla_py_num_sm_parts, flash_mla_py_is_supported.
#include <torch/csrc/inductor/aoti_torch/c/shim.h>
#include <torch/csrc/stable/accelerator.h>
#include <torch/csrc/stable/library.h>
#include <torch/csrc/stable/ops.h>
#include <torch/csrc/stable/tensor.h>

#include <cuda_runtime_api.h>

#include <algorithm>
#include <climits>
#include <cstring>
#include <optional>
#include <stdexcept>
#include <string>
#include <tuple>
#include <vector>

#include "flash_mla/flash_mla.h"

namespace {

using torch::headeronly::ScalarType;
using torch::stable::Tensor;

// ---------------------------------------------------------------------------------------------
// Messages
// ---------------------------------------------------------------------------------------------
[[noreturn]] void fail(const std::string& arg, const std::string& expected,
                       const std::string& got) {
  throw std::runtime_error(arg + ": expected " + expected + ", got " + got);
}

std::string dtype_name(ScalarType t) {
  switch (t) {
    case ScalarType::BFloat16: return "torch.bfloat16";
    case ScalarType::Half: return "torch.float16";
    case ScalarType::Float: return "torch.float32";
    case ScalarType::Double: return "torch.float64";
    case ScalarType::Int: return "torch.int32";
    case ScalarType::Long: return "torch.int64";
    case ScalarType::Byte: return "torch.uint8";
    default: return "scalar type " + std::to_string(static_cast<int>(t));
  }
}

std::string shape_str(const Tensor& t) {
  std::string s = "[";
  for (int64_t d = 0; d < t.dim(); ++d) s += (d ? ", " : "") + std::to_string(t.size(d));
  return s + "]";
}

std::string device_str(const Tensor& t) {
  return t.is_cuda() ? "cuda:" + std::to_string(t.get_device_index()) : "a non-CUDA device";
}

void throw_if_error(const flash_mla::Status& status) {
  if (!status.ok()) throw std::runtime_error(status.message());
}

// ---------------------------------------------------------------------------------------------
// Tensor checks
// ---------------------------------------------------------------------------------------------
void check_cuda(const Tensor& t, const char* arg, std::optional<int32_t> device = std::nullopt) {
  if (!t.is_cuda()) fail(arg, "a CUDA tensor", "a tensor on " + device_str(t));
  if (device && t.get_device_index() != *device) {
    fail(arg, "a tensor on cuda:" + std::to_string(*device) + " (the device of q)",
         "a tensor on " + device_str(t));
  }
}

void check_dtype(const Tensor& t, const char* arg, ScalarType want) {
  if (t.scalar_type() != want) fail(arg, "dtype " + dtype_name(want), dtype_name(t.scalar_type()));
}

void check_rank(const Tensor& t, const char* arg, int64_t rank, const char* layout) {
  if (t.dim() != rank) {
    fail(arg, std::to_string(rank) + " dimensions " + layout,
         std::to_string(t.dim()) + " dimensions " + shape_str(t));
  }
}

void check_size(const Tensor& t, const char* arg, int64_t dim, int64_t want, const char* why) {
  if (t.size(dim) != want) {
    fail(arg, "size " + std::to_string(want) + " in dimension " + std::to_string(dim) + " (" +
                  why + ")",
         "shape " + shape_str(t));
  }
}

// The innermost dimension must be dense (stride 1) unless it has a single element.
void check_inner_dense(const Tensor& t, const char* arg) {
  const int64_t last = t.dim() - 1;
  if (t.size(last) > 1 && t.stride(last) != 1) {
    fail(arg, "stride 1 in the last dimension", "stride " + std::to_string(t.stride(last)));
  }
}

int to_int(int64_t v, const char* arg) {
  if (v < INT_MIN || v > INT_MAX) fail(arg, "a value that fits in int32", std::to_string(v));
  return static_cast<int>(v);
}

// A stride the kernels may use: a dimension of one element is never stepped over, so its
// stride (which PyTorch leaves arbitrary) is passed as 0.
int64_t stride_of(const Tensor& t, int64_t dim) { return t.size(dim) == 1 ? 0 : t.stride(dim); }

flash_mla::KernelChoice kernel_choice(int64_t kernel) {
  if (kernel < static_cast<int64_t>(flash_mla::KernelChoice::kAuto) ||
      kernel > static_cast<int64_t>(flash_mla::KernelChoice::kHopper)) {
    fail("kernel", "0 (auto), 1 (portable) or 2 (hopper)", std::to_string(kernel));
  }
  return static_cast<flash_mla::KernelChoice>(kernel);
}

cudaStream_t current_stream(int32_t device) {
  void* stream = nullptr;
  TORCH_ERROR_CODE_CHECK(aoti_torch_get_current_cuda_stream(device, &stream));
  return static_cast<cudaStream_t>(stream);
}

// ---------------------------------------------------------------------------------------------
// Metadata
// ---------------------------------------------------------------------------------------------
// tile_scheduler_metadata [num_sm_parts >= 1, 8] and num_splits [batch + 1], int32, contiguous,
// on `device`: what get_mla_metadata returns for a batch of `batch` sequences.
void check_metadata_tensors(const Tensor& metadata, const Tensor& num_splits, int64_t batch,
                            int32_t device) {
  check_cuda(metadata, "tile_scheduler_metadata", device);
  check_dtype(metadata, "tile_scheduler_metadata", ScalarType::Int);
  check_rank(metadata, "tile_scheduler_metadata", 2, "[num_sm_parts, 8]");
  check_size(metadata, "tile_scheduler_metadata", 1, flash_mla::kMetadataFields,
             "fields per record");
  if (!metadata.is_contiguous() || metadata.size(0) < 1) {
    fail("tile_scheduler_metadata", "a contiguous [num_sm_parts >= 1, 8] tensor",
         "shape " + shape_str(metadata) + (metadata.is_contiguous() ? "" : ", not contiguous"));
  }
  check_cuda(num_splits, "num_splits", device);
  check_dtype(num_splits, "num_splits", ScalarType::Int);
  check_rank(num_splits, "num_splits", 1, "[b + 1]");
  check_size(num_splits, "num_splits", 0, batch + 1, "b + 1: metadata computed for this batch");
  check_inner_dense(num_splits, "num_splits");
}

// ---------------------------------------------------------------------------------------------
struct MetadataShape {
  int batch;
  int rows_per_kv_head;
  int num_heads_kv;
};

MetadataShape check_metadata_inputs(const Tensor& cache_seqlens, int64_t num_q_tokens_per_head_k,
                                    int64_t num_heads_k) {
  check_cuda(cache_seqlens, "cache_seqlens");
  check_dtype(cache_seqlens, "cache_seqlens", ScalarType::Int);
  check_rank(cache_seqlens, "cache_seqlens", 1, "[b]");
  check_inner_dense(cache_seqlens, "cache_seqlens");
  if (cache_seqlens.size(0) < 1) fail("cache_seqlens", "at least one sequence", "shape [0]");
  if (num_q_tokens_per_head_k < 1) {
    fail("num_q_tokens_per_head_k", "at least 1 (s_q * h_q // h_kv)",
         std::to_string(num_q_tokens_per_head_k));
  }
  if (num_heads_k < 1) fail("num_heads_k", "at least 1", std::to_string(num_heads_k));
  return {to_int(cache_seqlens.size(0), "cache_seqlens"),
          to_int(num_q_tokens_per_head_k, "num_q_tokens_per_head_k"),
          to_int(num_heads_k, "num_heads_k")};
}

void launch_metadata(const Tensor& cache_seqlens, const MetadataShape& shape,
                     Tensor& tile_scheduler_metadata, Tensor& num_splits) {
  const int32_t device = cache_seqlens.get_device_index();
  throw_if_error(flash_mla::compute_metadata(
      static_cast<const int32_t*>(cache_seqlens.data_ptr()), shape.batch, shape.rows_per_kv_head,
      shape.num_heads_kv, static_cast<int32_t*>(tile_scheduler_metadata.data_ptr()),
      to_int(tile_scheduler_metadata.size(0), "tile_scheduler_metadata"),
      static_cast<int32_t*>(num_splits.data_ptr()), current_stream(device)));
}

std::tuple<Tensor, Tensor> get_mla_metadata(Tensor cache_seqlens, int64_t num_q_tokens_per_head_k,
                                            int64_t num_heads_k, int64_t kernel) {
  const MetadataShape shape =
      check_metadata_inputs(cache_seqlens, num_q_tokens_per_head_k, num_heads_k);
  torch::stable::accelerator::DeviceGuard guard(cache_seqlens.get_device_index());
  int num_sm_parts = 0;
  throw_if_error(flash_mla::get_num_sm_parts(shape.rows_per_kv_head, shape.num_heads_kv,
                                             kernel_choice(kernel), &num_sm_parts));
  Tensor metadata = torch::stable::new_empty(
      cache_seqlens, {int64_t(num_sm_parts), int64_t(flash_mla::kMetadataFields)});
  Tensor splits = torch::stable::new_empty(cache_seqlens, {int64_t(shape.batch) + 1});
  launch_metadata(cache_seqlens, shape, metadata, splits);
  return {metadata, splits};
}

void get_mla_metadata_out(Tensor cache_seqlens, int64_t num_q_tokens_per_head_k,
                          int64_t num_heads_k, Tensor tile_scheduler_metadata, Tensor num_splits) {
  const MetadataShape shape =
      check_metadata_inputs(cache_seqlens, num_q_tokens_per_head_k, num_heads_k);
  const int32_t device = cache_seqlens.get_device_index();
  check_metadata_tensors(tile_scheduler_metadata, num_splits, shape.batch, device);
  torch::stable::accelerator::DeviceGuard guard(device);
  launch_metadata(cache_seqlens, shape, tile_scheduler_metadata, num_splits);
}

// ---------------------------------------------------------------------------------------------
// Decode
// ---------------------------------------------------------------------------------------------
std::tuple<Tensor, Tensor> fwd_kvcache(Tensor q, Tensor k_cache, Tensor block_table,
                                       Tensor cache_seqlens, int64_t head_dim_v,
                                       Tensor tile_scheduler_metadata, Tensor num_splits,
                                       std::optional<double> softmax_scale, bool causal,
                                       int64_t kernel) {
  // Tensor-level checks; the library checks the values (head dims, page size, h_q % h_kv,
  // stride alignment, metadata batch) with messages that name the same arguments.
  check_cuda(q, "q");
  const int32_t device = q.get_device_index();
  if (q.scalar_type() != ScalarType::BFloat16 && q.scalar_type() != ScalarType::Half) {
    fail("q", "dtype torch.bfloat16 or torch.float16", dtype_name(q.scalar_type()));
  }
  check_rank(q, "q", 4, "[b, s_q, h_q, 576]");
  check_inner_dense(q, "q");
  check_size(q, "q", 3, flash_mla::kHeadDim, "the MLA head dim: 512 latent + 64 RoPE channels");
  check_cuda(k_cache, "k_cache", device);
  check_dtype(k_cache, "k_cache", q.scalar_type());
  check_rank(k_cache, "k_cache", 4, "[num_blocks, page_block_size, h_kv, 576]");
  check_inner_dense(k_cache, "k_cache");
  check_size(k_cache, "k_cache", 3, q.size(3), "the head dim of q");
  const int64_t batch = q.size(0);
  check_cuda(block_table, "block_table", device);
  check_dtype(block_table, "block_table", ScalarType::Int);
  check_rank(block_table, "block_table", 2, "[b, max_blocks_per_seq]");
  check_inner_dense(block_table, "block_table");
  check_size(block_table, "block_table", 0, batch, "b, the batch of q");
  check_cuda(cache_seqlens, "cache_seqlens", device);
  check_dtype(cache_seqlens, "cache_seqlens", ScalarType::Int);
  check_rank(cache_seqlens, "cache_seqlens", 1, "[b]");
  check_inner_dense(cache_seqlens, "cache_seqlens");
  check_size(cache_seqlens, "cache_seqlens", 0, batch, "b, the batch of q");
  check_metadata_tensors(tile_scheduler_metadata, num_splits, batch, device);

  flash_mla::DecodeProblem pr;
  pr.dtype = q.scalar_type() == ScalarType::BFloat16 ? flash_mla::DType::kBF16
                                                      : flash_mla::DType::kFP16;
  pr.batch = to_int(batch, "q");
  pr.seqlen_q = to_int(q.size(1), "q");
  pr.num_heads_q = to_int(q.size(2), "q");
  pr.num_heads_kv = to_int(k_cache.size(2), "k_cache");
  pr.head_dim = to_int(q.size(3), "q");
  pr.head_dim_v = to_int(head_dim_v, "head_dim_v");
  pr.page_block_size = to_int(k_cache.size(1), "k_cache");
  pr.num_blocks = to_int(k_cache.size(0), "k_cache");
  pr.max_blocks_per_seq = to_int(block_table.size(1), "block_table");
  pr.causal = causal;
  if (softmax_scale) pr.softmax_scale = static_cast<float>(*softmax_scale);
  pr.kernel = kernel_choice(kernel);
  // get_workspace_size validates the problem, so nothing is allocated for a rejected one.
  size_t workspace_bytes = 0;
  const int num_sm_parts = to_int(tile_scheduler_metadata.size(0), "tile_scheduler_metadata");
  throw_if_error(flash_mla::get_workspace_size(pr, num_sm_parts, &workspace_bytes));

  torch::stable::accelerator::DeviceGuard guard(device);
  Tensor out = torch::stable::new_empty(q, {batch, q.size(1), q.size(2), int64_t(pr.head_dim_v)});
  Tensor lse = torch::stable::new_empty(q, {batch, q.size(2), q.size(1)}, ScalarType::Float);
  Tensor workspace = torch::stable::new_empty(
      q, {std::max<int64_t>(1, static_cast<int64_t>(workspace_bytes))}, ScalarType::Byte);

  flash_mla::DecodeArgs a;
  a.q = q.data_ptr();
  a.q_batch_stride = stride_of(q, 0);
  a.q_seq_stride = stride_of(q, 1);
  a.q_head_stride = stride_of(q, 2);
  a.k_cache = k_cache.data_ptr();
  a.k_block_stride = stride_of(k_cache, 0);
  a.k_token_stride = stride_of(k_cache, 1);
  a.k_head_stride = stride_of(k_cache, 2);
  a.block_table = static_cast<const int32_t*>(block_table.data_ptr());
  a.block_table_batch_stride = batch == 1 ? block_table.size(1) : block_table.stride(0);
  a.cache_seqlens = static_cast<const int32_t*>(cache_seqlens.data_ptr());
  a.tile_scheduler_metadata = static_cast<const int32_t*>(tile_scheduler_metadata.data_ptr());
  a.num_sm_parts = num_sm_parts;
  a.num_splits = static_cast<const int32_t*>(num_splits.data_ptr());
  a.metadata_batch = to_int(num_splits.size(0) - 1, "num_splits");
  a.out = out.data_ptr();
  a.out_batch_stride = out.stride(0);
  a.out_seq_stride = out.stride(1);
  a.out_head_stride = out.stride(2);
  a.lse = static_cast<float*>(lse.data_ptr());
  a.lse_batch_stride = lse.stride(0);
  a.lse_head_stride = lse.stride(1);
  a.lse_seq_stride = lse.stride(2);
  a.workspace = workspace.data_ptr();
  a.workspace_bytes = workspace_bytes;
  throw_if_error(flash_mla::decode(pr, a, current_stream(device)));
  return {out, lse};
}

}  // namespace

STABLE_TORCH_LIBRARY(flash_mla, m) {
  m.def("get_mla_metadata(Tensor cache_seqlens, int num_q_tokens_per_head_k, int num_heads_k, "
        "int kernel_id=0) -> (Tensor, Tensor)");
  m.def("get_mla_metadata_out(Tensor cache_seqlens, int num_q_tokens_per_head_k, "
        "int num_heads_k, Tensor(a!) tile_scheduler_metadata, Tensor(b!) num_splits) -> ()");
  m.def("fwd_kvcache(Tensor q, Tensor k_cache, Tensor block_table, Tensor cache_seqlens, "
        "int head_dim_v, Tensor tile_scheduler_metadata, Tensor num_splits, "
        "float? softmax_scale=None, bool causal=False, int kernel_id=0) -> (Tensor, Tensor)");
}

STABLE_TORCH_LIBRARY_IMPL(flash_mla, CUDA, m) {
  m.impl("get_mla_metadata", TORCH_BOX(&get_mla_metadata));
  m.impl("get_mla_metadata_out", TORCH_BOX(&get_mla_metadata_out));
  m.impl("fwd_kvcache", TORCH_BOX(&fwd_kvcache));
}

// CPU tensors reach the same functions, whose first check rejects them with a message naming
// the argument (rather than the dispatcher's "could not run ... with the CPU backend").
STABLE_TORCH_LIBRARY_IMPL(flash_mla, CPU, m) {
  m.impl("get_mla_metadata", TORCH_BOX(&get_mla_metadata));
  m.impl("get_mla_metadata_out", TORCH_BOX(&get_mla_metadata_out));
  m.impl("fwd_kvcache", TORCH_BOX(&fwd_kvcache));
}

// ---------------------------------------------------------------------------------------------
// ctypes entry points (plain C, no tensors): the fake implementation of get_mla_metadata needs
// the number of scheduling parts, which depends on the GPU, without running an op.
// Return 0 on success; otherwise a non-zero StatusCode with the message copied into `message`.
// ---------------------------------------------------------------------------------------------
namespace {

int report(const flash_mla::Status& status, char* message, int message_len) {
  if (message != nullptr && message_len > 0) {
    const std::string& text = status.message();
    const size_t n = std::min(text.size(), static_cast<size_t>(message_len - 1));
    std::memcpy(message, text.data(), n);
    message[n] = '\0';
  }
  return static_cast<int>(status.code());
}

// Runs `fn` with `device` current, restoring the caller's device afterwards.
template <typename Fn>
flash_mla::Status on_device(int device, Fn&& fn) {
  int previous = -1;
  if (cudaError_t err = cudaGetDevice(&previous); err != cudaSuccess) {
    cudaGetLastError();
    return flash_mla::Status(flash_mla::StatusCode::kNotSupported,
                             std::string("no usable CUDA device: ") + cudaGetErrorString(err));
  }
  if (cudaError_t err = cudaSetDevice(device); err != cudaSuccess) {
    cudaGetLastError();
    return flash_mla::Status(flash_mla::StatusCode::kInvalidArgument,
                             "device: expected a CUDA device index, got " +
                                 std::to_string(device) + " (" + cudaGetErrorString(err) + ")");
  }
  flash_mla::Status status = fn();
  cudaSetDevice(previous);
  return status;
}

}  // namespace

extern "C" __attribute__((visibility("default"))) int flash_mla_py_num_sm_parts(
    int device, int rows_per_kv_head, int num_heads_kv, int kernel, int* num_sm_parts,
    char* message, int message_len) {
  return report(on_device(device,
                          [&] {
                            return flash_mla::get_num_sm_parts(
                                rows_per_kv_head, num_heads_kv,
                                static_cast<flash_mla::KernelChoice>(kernel), num_sm_parts);
                          }),
                message, message_len);
}

extern "C" __attribute__((visibility("default"))) int flash_mla_py_is_supported(
    int device, char* message, int message_len) {
  return report(flash_mla::is_supported(device), message, message_len);
}
