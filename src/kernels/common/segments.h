// The walk every decode kernel makes over its scheduling record: the (sequence, page range)
// segments a CTA owns, in order, with the workspace slot of each split piece. One definition,
// so the split kernels and the combine kernel agree on slots (docs/design.md, "The schedule").
// Also where a fused query row lives in q, out, lse and the workspace, for every kernel.
#pragma once

#include <cstdint>

#include "kernels/common/ptx.h"
#include "kernels/params.h"
#include "scheduler/chain.h"
#include "scheduler/schedule.h"

namespace flash_mla {

// One contiguous, page-aligned range of KV tokens of one sequence.
struct Segment {
  int batch;
  int seqlen;
  int token_begin;  // multiple of sched::kPageBlock
  int token_end;    // <= seqlen
  int slot;         // workspace slot of a split piece, -1 when written directly
};

// The first token that the TMA kernels' load of the page at `tile` holds (sm90): `tile`, except
// on a sequence's partial last page, which is loaded ending at the segment's last token. Its
// coordinate in the page, origin - tile, is then negative: the rows before the page lie outside
// the tensor map, so the copy engine fills them with zeros and reads nothing for them. No NaN
// past a sequence's end reaches shared memory (0 x NaN would survive P·V), and those tokens are
// not read. The kernels mask keys below `tile` (the previous page's) as well as those at or
// above a row's limit.
__device__ __forceinline__ int page_origin(const Segment& seg, int tile) {
  return min(tile, seg.token_end - sched::kPageBlock);
}

// Keys of `seg` visible to query index i (0 .. seqlen_q - 1): tokens below the returned
// limit. Causal: query i sits at position seqlen - seqlen_q + i and sees keys up to it.
__device__ __forceinline__ int key_limit(const DecodeParams& p, const Segment& seg, int i) {
  return p.causal ? min(seg.seqlen, seg.seqlen - p.seqlen_q + i + 1) : seg.seqlen;
}

// Row of the fp32 workspace that holds fused query row `row` of KV head g in workspace slot
// `slot`: o_accum holds 512 floats per row and lse_accum one, in the layout [num_slots, h_kv, M]
// that the split kernels write and the combine kernel reads.
__device__ __forceinline__ int64_t workspace_row(const DecodeParams& p, int slot, int g, int row) {
  return (static_cast<int64_t>(slot) * p.num_heads_kv + g) * p.rows_per_kv + row;
}

// Where fused row `row` of KV head g of sequence b lives in q, out and lse: the row is query
// position i = row / heads_per_kv of query head g * heads_per_kv + row % heads_per_kv
// (DecodeParams::rows_per_kv). Offsets in elements.
struct FusedRow {
  int i;  // query position (0 .. s_q - 1)
  int h;  // query head (0 .. h_q - 1)
};
// The query position alone (what causal masking needs).
__device__ __forceinline__ int query_position(const DecodeParams& p, int row) {
  return row / p.heads_per_kv;
}
__device__ __forceinline__ FusedRow fused_row(const DecodeParams& p, int g, int row) {
  return {query_position(p, row), g * p.heads_per_kv + row % p.heads_per_kv};
}
__device__ __forceinline__ int64_t q_offset(const DecodeParams& p, int b, int g, int row) {
  const FusedRow r = fused_row(p, g, row);
  return b * p.q_batch_stride + r.i * p.q_seq_stride + r.h * p.q_head_stride;
}
__device__ __forceinline__ int64_t out_offset(const DecodeParams& p, int b, int g, int row) {
  const FusedRow r = fused_row(p, g, row);
  return b * p.out_batch_stride + r.i * p.out_seq_stride + r.h * p.out_head_stride;
}
__device__ __forceinline__ int64_t lse_offset(const DecodeParams& p, int b, int g, int row) {
  const FusedRow r = fused_row(p, g, row);
  return b * p.lse_batch_stride + r.h * p.lse_head_stride + r.i * p.lse_seq_stride;
}

// Field f of scheduling record `part`.
__device__ __forceinline__ int record_field(const DecodeParams& p, int part, sched::Field f) {
  return p.metadata[static_cast<int64_t>(part) * sched::kNumFields + static_cast<int>(f)];
}

// The split sequence that scheduling record `part` names for the combine kernel to merge
// (sched::Field::kCombineBatch), or -1 when it names none.
__device__ __forceinline__ int combine_batch(const DecodeParams& p, int part) {
  const int b = record_field(p, part, sched::Field::kCombineBatch);
  return b >= 0 && b < p.batch ? b : -1;
}

// Split kernels, after their griddep_wait: when no sequence of the batch is split, the combine
// kernel has nothing to merge and may launch at once; its CTAs then find no work and finish
// while this kernel runs (docs/design.md, "A decode call"). When something is split the CTAs
// signal by exiting, as before: an early launch put the merging CTAs on the first SMs to free
// up (perf-notes, "Programmatic dependent launch"). Called by every thread of the CTA; the
// record's line is read again by every role next.
__device__ __forceinline__ void allow_combine_if_nothing_split(const DecodeParams& p, int part) {
  if (record_field(p, part, sched::Field::kCombineBatch) == sched::kNothingSplit) {
    ptx::griddep_launch_dependents();
  }
}

// Calls fn(segment) for each segment of scheduling record `part`, in order (nothing for an
// idle record: begin == end, in either schedule). Every role of a CTA makes the same walk. Pages
// are the scheduler's. A chain schedule (scheduler/chain.h) stores a walk order: its records'
// begin and end are positions in it, and position x holds sequence chain_batch(x); otherwise
// position x is sequence x.
template <class Fn>
__device__ __forceinline__ void for_each_segment(const DecodeParams& p, int part, Fn&& fn) {
  using sched::Field;
  const int begin_pos = record_field(p, part, Field::kBeginBatch);
  const int begin_block = record_field(p, part, Field::kBeginBlock);
  const int end_pos = record_field(p, part, Field::kEndBatch);
  const int end_block = record_field(p, part, Field::kEndBlock);
  const int first_slot = record_field(p, part, Field::kFirstSlot);
  if (begin_pos == end_pos && begin_block == end_block) return;
  for (int x = begin_pos; x <= end_pos && x < p.batch; ++x) {
    // Read per segment rather than kept in a register across fn (the portable kernel's 32-row
    // configuration has none to spare). A chain's order holds chain_capacity(P) positions.
    const bool chain = sched::is_chain(p.metadata);
    if (chain && x >= sched::chain_capacity(p.num_sm_parts)) break;  // inconsistent metadata
    const int b = chain ? sched::chain_batch(p.metadata, p.num_sm_parts, x) : x;
    if (b < 0 || b >= p.batch) continue;  // inconsistent metadata: never index out of bounds
    const int seqlen = max(p.cache_seqlens[b], 0);
    const int num_blocks = sched::num_page_blocks(seqlen);
    const int j0 = x == begin_pos ? begin_block : 0;
    // Clamped so that metadata from other lengths can never walk past the used blocks.
    const int j1 = min(x == end_pos ? end_block : num_blocks, num_blocks);
    if (j0 >= j1) continue;
    const bool split = p.num_splits[b + 1] > p.num_splits[b];
    const int slot = !split ? -1
                     : (x == begin_pos && first_slot >= 0) ? first_slot
                                                          : p.num_splits[b];
    if (slot >= p.num_slots) continue;  // inconsistent metadata: never write out of bounds
    fn(Segment{b, seqlen, j0 * sched::kPageBlock, min(j1 * sched::kPageBlock, seqlen), slot});
  }
}

}  // namespace flash_mla
