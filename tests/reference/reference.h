// CPU reference of the decode operation (SPEC §1) with float64 accumulation, and host-side
// bf16/fp16 conversions. Used by the tests and by the benchmark's output check.
#pragma once

#include <cstdint>
#include <vector>

namespace flash_mla::ref {

// Raw 16-bit storage <-> float (round to nearest even; NaN stays NaN).
uint16_t float_to_bf16(float x);
float bf16_to_float(uint16_t bits);
uint16_t float_to_fp16(float x);
float fp16_to_float(uint16_t bits);

struct RefProblem {
  int batch = 0;
  int seqlen_q = 1;
  int num_heads_q = 0;
  int num_heads_kv = 1;
  int page_block_size = 64;
  int max_blocks_per_seq = 0;
  bool causal = false;
  double softmax_scale = 0.0;  // the scale actually used (caller resolves the default)
};

// Inputs as float values (already rounded to the kernel's 16-bit dtype), densely packed:
//   q            [batch, seqlen_q, num_heads_q, 576]
//   k_cache      [num_blocks, page_block_size, num_heads_kv, 576]
//   block_table  [batch, max_blocks_per_seq]
//   cache_seqlens[batch]
// Writes out512[512] and *lse (natural log) for query token i, head h of sequence b.
// Rows with no valid key: out = 0, lse = +inf.
void reference_row(const RefProblem& p, const float* q, const float* k_cache,
                   const int32_t* block_table, const int32_t* cache_seqlens, int b, int i, int h,
                   double* out512, double* lse);

// All rows: out [batch, seqlen_q, num_heads_q, 512], lse [batch, num_heads_q, seqlen_q].
void reference_all(const RefProblem& p, const float* q, const float* k_cache,
                   const int32_t* block_table, const int32_t* cache_seqlens,
                   std::vector<double>& out, std::vector<double>& lse);

}  // namespace flash_mla::ref
