// flash_mla: MLA (multi-head latent attention) decoding attention over a paged KV cache.
//
// The operation (see docs/design.md and the project SPEC §1): for batch element b, query
// token i < s_q and query head h (KV head g = h / (h_q / h_kv)), over the KV tokens
// j < L_b = cache_seqlens[b]:
//
//   s_j  = softmax_scale * dot(q[b,i,h,:576], K[b,j,g,:576])          fp32 accumulation
//   valid= j < L_b  and, if causal,  j <= L_b - s_q + i
//   lse  = log(sum_valid exp(s_j))                                      natural log, fp32
//   out[b,i,h,:] = sum_valid exp(s_j - lse) * K[b,j,g,:512]             stored in q's dtype
//
// A row with no valid key gets out = 0 and lse = +inf.
//
// Calling sequence (all on the caller's stream, no host synchronisation, no allocation,
// CUDA-graph capturable):
//   1. get_num_sm_parts()      -> size of the scheduling metadata, [num_sm_parts, 8] int32
//   2. get_workspace_size()    -> bytes of caller-owned workspace for split-KV partials
//   3. compute_metadata()      -> fills the metadata from cache_seqlens on the device; once
//                                 per decoding step, reusable for every layer
//   4. decode()                -> split kernel + combine kernel
//
// No function throws; every failure is a Status whose message names the argument, what was
// expected and what was received. A rejected call launches nothing.
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>

namespace flash_mla {

// ---------------------------------------------------------------------------------------------
// Status
// ---------------------------------------------------------------------------------------------
enum class StatusCode : int {
  kOk = 0,
  kInvalidArgument = 1,   // an argument breaks the contract; the message names it
  kNotSupported = 2,      // valid request this build or GPU cannot serve (e.g. no sm_80+ GPU)
  kWorkspaceTooSmall = 3, // the caller's workspace is smaller than get_workspace_size() said
  kCudaError = 4,         // a CUDA runtime call failed; the message carries cudaGetErrorString
};

class Status {
 public:
  Status() = default;
  Status(StatusCode code, std::string message) : code_(code), message_(std::move(message)) {}
  static Status ok_status() { return Status(); }

  bool ok() const { return code_ == StatusCode::kOk; }
  StatusCode code() const { return code_; }
  const std::string& message() const { return message_; }

 private:
  StatusCode code_ = StatusCode::kOk;
  std::string message_;
};

const char* status_code_name(StatusCode code);

// ---------------------------------------------------------------------------------------------
// Problem description
// ---------------------------------------------------------------------------------------------
enum class DType : int { kBF16 = 0, kFP16 = 1 };

// Which decode kernel to run. kAuto picks the fastest one built for the current GPU; the
// portable kernel (mma.sync / ldmatrix / cp.async, sm_80 and newer) can always be forced;
// kHopper (TMA + wgmma, warp-specialised) needs an sm_90 GPU and sm_90a code in this build.
enum class KernelChoice : int { kAuto = 0, kPortable = 1, kHopper = 2 };

const char* kernel_name(KernelChoice choice);

inline constexpr int kHeadDim = 576;        // K: 512 latent ("NoPE") + 64 RoPE channels
inline constexpr int kHeadDimV = 512;       // V is the first 512 channels of K
inline constexpr int kPageBlockSize = 64;   // tokens per page of the KV cache
inline constexpr int kMetadataFields = 8;   // int32 fields per row of the scheduling metadata

struct DecodeProblem {
  DType dtype = DType::kBF16;
  int batch = 0;               // b >= 1
  int seqlen_q = 1;            // s_q >= 1 (tokens decoded per step: MTP / speculative)
  int num_heads_q = 0;         // h_q, a multiple of num_heads_kv
  int num_heads_kv = 1;        // h_kv
  int head_dim = kHeadDim;     // must be 576
  int head_dim_v = kHeadDimV;  // must be 512
  int page_block_size = kPageBlockSize;  // must be 64
  int num_blocks = 0;          // physical pages in k_cache
  int max_blocks_per_seq = 0;  // columns of block_table
  bool causal = false;
  std::optional<float> softmax_scale;  // default 1/sqrt(head_dim)
  KernelChoice kernel = KernelChoice::kAuto;

  // Query rows that share one KV head: s_q * h_q / h_kv.
  int rows_per_kv_head() const {
    return num_heads_kv > 0 ? seqlen_q * (num_heads_q / num_heads_kv) : 0;
  }
};

// Device pointers with element strides. The last (channel) dimension of q, k_cache and out is
// contiguous; every other stride is free (>= 0) but must keep rows 16-byte aligned, i.e. be a
// multiple of 8 elements. Shapes follow the Python API:
struct DecodeArgs {
  const void* q = nullptr;            // [b, s_q, h_q, 576]   q dtype
  int64_t q_batch_stride = 0;
  int64_t q_seq_stride = 0;
  int64_t q_head_stride = 0;

  const void* k_cache = nullptr;      // [num_blocks, 64, h_kv, 576]   q dtype; V = [..., :512]
  int64_t k_block_stride = 0;
  int64_t k_token_stride = 0;
  int64_t k_head_stride = 0;

  const int32_t* block_table = nullptr;  // [b, max_blocks_per_seq]; row stride below, column 1
  int64_t block_table_batch_stride = 0;
  const int32_t* cache_seqlens = nullptr;  // [b]; 0 allowed

  const int32_t* tile_scheduler_metadata = nullptr;  // [num_sm_parts, 8] from compute_metadata
  int num_sm_parts = 0;  // 1 .. 65535 (a grid dimension of the split kernel)
  const int32_t* num_splits = nullptr;  // [metadata_batch + 1] from compute_metadata
  int metadata_batch = 0;               // the batch the metadata was computed for

  void* out = nullptr;                // [b, s_q, h_q, 512]   q dtype
  int64_t out_batch_stride = 0;
  int64_t out_seq_stride = 0;
  int64_t out_head_stride = 0;

  float* lse = nullptr;               // [b, h_q, s_q]   fp32, natural log
  int64_t lse_batch_stride = 0;
  int64_t lse_head_stride = 0;
  int64_t lse_seq_stride = 0;

  void* workspace = nullptr;          // caller-owned, >= get_workspace_size() bytes, 256-B aligned
  size_t workspace_bytes = 0;
};

// Fills args' strides for densely packed tensors of the given problem (a convenience for
// callers that own contiguous buffers; pointers are left untouched).
void set_contiguous_strides(const DecodeProblem& problem, DecodeArgs& args);

// ---------------------------------------------------------------------------------------------
// Calls
// ---------------------------------------------------------------------------------------------

// Rows of the scheduling metadata ([num_sm_parts, 8] int32) for a problem with
// `rows_per_kv_head` = s_q * h_q / h_kv query rows per KV head on the current CUDA device.
Status get_num_sm_parts(int rows_per_kv_head, int num_heads_kv, KernelChoice kernel,
                        int* num_sm_parts);

// Bytes of workspace decode() needs for `num_sm_parts` (fp32 partial outputs and LSEs).
Status get_workspace_size(const DecodeProblem& problem, int num_sm_parts, size_t* bytes);

// Computes the split-KV schedule from cache_seqlens [batch] on the device, into
// tile_scheduler_metadata [num_sm_parts, 8] and num_splits [batch + 1]. rows_per_kv_head
// (s_q * h_q / h_kv) tunes the balance; any value gives a correct schedule.
Status compute_metadata(const int32_t* cache_seqlens, int batch, int rows_per_kv_head,
                        int num_heads_kv, int32_t* tile_scheduler_metadata, int num_sm_parts,
                        int32_t* num_splits, cudaStream_t stream);

// Validates everything that can be checked without touching device memory, then launches
// the split kernel and the combine kernel on `stream`.
Status decode(const DecodeProblem& problem, const DecodeArgs& args, cudaStream_t stream);

// Validation alone (what decode() checks before launching); no CUDA call except pointer
// attribute queries when `check_pointers` is true.
Status validate(const DecodeProblem& problem, const DecodeArgs& args, bool check_pointers);

// Whether the current device can run the library, and why not.
Status is_supported(int device);

}  // namespace flash_mla
