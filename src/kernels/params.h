// Torch-free, validated parameters shared by the host dispatch and every decode kernel.
// Host code fills it field by field after validation; device code never sees raw user input.
#pragma once

#include <cstdint>

namespace flash_mla {

struct DecodeParams {
  // Shapes.
  int batch;
  int seqlen_q;            // s_q
  int num_heads_q;         // h_q
  int num_heads_kv;        // h_kv
  int heads_per_kv;        // h_q / h_kv
  int rows_per_kv;         // M = s_q * heads_per_kv; fused row r = i * heads_per_kv + h_local
  int max_blocks_per_seq;
  bool causal;
  float scale_log2;        // softmax_scale * log2(e): scores live in the base-2 domain

  // Inputs (element strides; channel dim contiguous).
  const void* q;           // [b, s_q, h_q, 576]
  int64_t q_batch_stride, q_seq_stride, q_head_stride;
  const void* k_cache;     // [num_blocks, 64, h_kv, 576]
  int64_t k_block_stride, k_token_stride, k_head_stride;
  int num_blocks;          // physical pages (the Hopper kernel's TMA tensor map needs it)
  const int32_t* block_table;  // [b, max_blocks_per_seq]
  int64_t block_table_batch_stride;
  const int32_t* cache_seqlens;  // [b]

  // Schedule.
  const int32_t* metadata;     // [num_sm_parts, 8], fields of sched::Field
  int num_sm_parts;
  const int32_t* num_splits;   // [b + 1], first workspace slot of each sequence

  // Outputs.
  void* out;               // [b, s_q, h_q, 512]
  int64_t out_batch_stride, out_seq_stride, out_head_stride;
  float* lse;              // [b, h_q, s_q], natural log
  int64_t lse_batch_stride, lse_head_stride, lse_seq_stride;

  // Workspace: fp32 partials of split sequences.
  float* o_accum;          // [num_slots, h_kv, M, 512], normalised by its own sum
  float* lse_accum;        // [num_slots, h_kv, M], natural log; -inf = no valid key
  int num_slots;

  // Kernel configuration chosen by the host planner.
  int kv_stages;           // portable kernel: KV tiles in shared memory (2..6)
};

}  // namespace flash_mla
