// The split-KV schedule: which SM part handles which (batch, page-block) range.
//
// Every page block of every sequence gets a position on one line of "cost"; a sequence with
// n > 0 blocks occupies n + V consecutive positions, V = fixed_overhead_blocks(rows) (the
// overhead stands for loading Q, the epilogue and the combine), an empty sequence occupies none:
//
//   C[b]            = sum_{b' < b} cost(b')                      (exclusive prefix, C[B] = total)
//   block j of b    sits at position C[b] + V + j
//   part p          covers the positions [p * W, (p + 1) * W)
//
// So the parts partition the blocks exactly (each block is in the part floor(pos / W)), work is
// balanced by blocks rather than by sequences, and every quantity is a closed form of C and W
// that a thread can evaluate alone: the device kernel and its host twin run the same code.
//
// The width W is the balanced ceil(total / num_parts), unless a slightly wider one splits no
// sequence at all: then the smallest such W within split_slack() of the balanced one. A split
// costs more than its share of the line says (a second Q load and epilogue, fp32 partials
// written and read back by the combine kernel, in proportion to the rows), so a batch of equal
// lengths that does not divide evenly among the parts is better served whole, one or k
// sequences per part, than cut at every part boundary (docs/perf-notes.md, "Whole sequences").
//
// A sequence whose blocks fall into k > 1 parts is "split": its k pieces write fp32 partials
// into k consecutive slots of the workspace, starting at num_splits[b], and the combine kernel
// merges them. A sequence in one part is written directly and takes no slot. Each part holds
// at most two split pieces (its first and its last sequence), so slots <= 2 * num_parts.
#pragma once

#include <cstdint>

#if defined(__CUDACC__)
#define FLASH_MLA_HD __host__ __device__ __forceinline__
#else
#define FLASH_MLA_HD inline
#endif

namespace flash_mla::sched {

inline constexpr int kPageBlock = 64;

// The fixed cost of a sequence (of each piece of one) in blocks of work, by rows per KV head:
// 5 up to 32 rows (FlashMLA's write-up uses 5 too), 6 above. Since sm_90 runs the wide kernel
// from 17 rows, 6 was tried at 17-32 rows too: 0.5-1.8% slower with variable lengths at b = 16
// and 128, 9% at b = 4 (H200; docs/perf-notes.md, "The wide kernel from 17 rows"). A
// per-segment trace of the wide kernel put a segment's fixed cost (Q wait, pipeline refill,
// epilogue) at about 5.5 pages' time at 64 rows and 6-7 at 128. Against 12, the value until
// 2026-11-21, 6 was 1-6% faster with variable lengths at b >= 16, level with equal lengths, and
// 2-6% slower at b = 4 and 8 with 128 rows; 7 and 8 above 64 rows were no better overall (H200;
// docs/perf-notes.md, "The per-sequence overhead, again").
FLASH_MLA_HD int fixed_overhead_blocks(int rows_per_kv_head) {
  return rows_per_kv_head <= 32 ? 5 : 6;
}

// Fields of one [8] int32 metadata record.
// A chain schedule (chain.h) reads begin / end batch as positions in its walk order, and keeps
// that order in kIdle and kNumParts; idle is begin == end in either schedule.
enum class Field : int {
  kBeginBatch = 0,  // first sequence of the part
  kBeginBlock = 1,  // first page block of kBeginBatch
  kEndBatch = 2,    // exclusive end position: sequence ...
  kEndBlock = 3,    //   ... and page block within it (the part stops before (kEndBatch, kEndBlock))
  kFirstSlot = 4,   // workspace slot of the first piece if its sequence is split, else -1
  kIdle = 5,        // 1 when the part covers no block (begin == end)
  kNumParts = 6,    // num_parts the schedule was made for (a consistency tag)
  kCombineBatch = 7,  // split sequence whose last piece is this part's first segment, else -1
                      // (kNothingSplit when no sequence is): the combine kernel merges it (at
                      // most one per part, so the combine grid scales with parts, not with the
                      // batch)
};
inline constexpr int kNumFields = 8;
// kCombineBatch of every record when no sequence of the batch is split: the split kernels then
// let the combine kernel launch at their start, since it has nothing to wait for but their end.
inline constexpr int kNothingSplit = -2;

FLASH_MLA_HD int num_page_blocks(int seqlen) {
  return seqlen > 0 ? (seqlen + kPageBlock - 1) / kPageBlock : 0;
}

FLASH_MLA_HD int sequence_cost(int seqlen, int overhead) {
  const int n = num_page_blocks(seqlen);
  return n > 0 ? n + overhead : 0;
}

// The balanced width.
FLASH_MLA_HD int part_width(int total_cost, int num_parts) {
  return total_cost > 0 ? (total_cost + num_parts - 1) / num_parts : 1;
}

// How many positions wider than the balanced width w0 a split-free width may be: about twice the
// measured cost of a split piece in blocks, which grows with the query rows per KV head (the
// fp32 partials a piece writes and the combine reads back). Measured on the H200 with b = 128
// equal lengths (docs/perf-notes.md, "Whole sequences"): about 2, 4 and 7 blocks a piece at
// 16, 32 and 64 rows, and a width 3% wider still gained 1-2% at 128 and 256 rows: 2, 4, 8, 14
// and 20 positions at 1-9, 16, 32, 64 and 96+ rows. The pieces run in parallel, so this trade
// holds only while a part's blocks outweigh a piece's cost: the slack is at most w0 (a width at
// most doubled). Without that bound one short sequence (b = 1, 640 tokens, 128 rows) went whole
// into one part and took 31.6 us instead of 17.6 (docs/perf-notes.md, "The split-free slack").
// With at most kMemoryBoundRows rows the slack is also at least w0 / 32: there the kernels are
// memory-bound, and while a width ~3% wider leaves a few parts idle the others still keep HBM
// busy. b = 128 equal lengths of 32768 tokens are then served whole, one per part (517-518
// against 502-503), +3.2-3.3% at 32 and 64 rows; at 128 and 256 rows, where an idle part is lost
// tensor time, the same run read -1.7 and +3.6% within a spread of -10 to +10% (H200,
// docs/perf-notes.md, "A split-free slack in proportion").
inline constexpr int kMaxSplitSlack = 31;  // candidate widths fit one 32-bit mask
inline constexpr int kMemoryBoundRows = 64;
inline constexpr int kProportionalSlackDivisor = 32;
FLASH_MLA_HD int split_slack(int rows_per_kv_head, int w0) {
  const int rows = rows_per_kv_head < 96 ? rows_per_kv_head : 96;
  int slack = 2 * (1 + rows / 10);
  const int proportional = w0 / kProportionalSlackDivisor;
  if (rows_per_kv_head <= kMemoryBoundRows && slack < proportional) slack = proportional;
  if (slack > w0) slack = w0;
  return slack < kMaxSplitSlack ? slack : kMaxSplitSlack;
}

// Smallest b in [0, batch] with prefix[b + 1] > x (batch if none): the sequence holding or
// following position x. prefix has batch + 1 entries.
FLASH_MLA_HD int find_sequence(const int32_t* prefix, int batch, int x) {
  int lo = 0, hi = batch;  // answer in [lo, hi]
  while (lo < hi) {
    const int mid = (lo + hi) / 2;
    if (prefix[mid + 1] > x) hi = mid; else lo = mid + 1;
  }
  return lo;
}

// First block at or after position x, as (sequence, block); (batch, 0) past the end.
struct BlockPos { int batch; int block; };
FLASH_MLA_HD BlockPos first_block_at(const int32_t* prefix, int batch, int x, int overhead) {
  const int b = find_sequence(prefix, batch, x);
  if (b >= batch) return {batch, 0};
  const int offset = x - prefix[b] - overhead;
  return {b, offset > 0 ? offset : 0};
}

// The part a position falls into.
FLASH_MLA_HD int part_of(int position, int width) { return position / width; }

// Number of parts a sequence occupying cost positions [begin, end) falls into (0 if empty).
FLASH_MLA_HD int num_pieces_between(int begin, int end, int width, int overhead) {
  const int first = begin + overhead;
  if (end <= first) return 0;
  return part_of(end - 1, width) - part_of(first, width) + 1;
}

FLASH_MLA_HD int num_pieces(const int32_t* prefix, int b, int width, int overhead) {
  return num_pieces_between(prefix[b], prefix[b + 1], width, overhead);
}

// Bit k set: the sequence occupying cost positions [begin, end) is split when the width is
// w0 + k, for k in [0, slack]. OR-ed over the batch, the lowest clear bit is the width to use.
// One division per candidate: the blocks [first, last] share a part unless a multiple of the
// width lies in (first, last].
FLASH_MLA_HD uint32_t split_widths(int begin, int end, int w0, int slack, int overhead) {
  const int first = begin + overhead, last = end - 1;
  if (last < first) return 0;  // empty
  uint32_t mask = 0;
  for (int k = 0; k <= slack; ++k) {
    const int w = w0 + k;
    if (last >= (first / w + 1) * w) mask |= 1u << k;
  }
  return mask;
}

// Whether any candidate width can leave every sequence whole: not when the longest sequence
// has more blocks than the widest candidate (the common case of mixed lengths and of a few long
// sequences, which then skips the per-candidate divisions).
FLASH_MLA_HD bool whole_widths_possible(int max_blocks, int w0, int slack) {
  return max_blocks <= w0 + slack;
}

// The width of the schedule from the balanced width w0 and the OR of split_widths() over the
// batch: the narrowest candidate that splits nothing, else w0.
FLASH_MLA_HD int choose_width(int w0, uint32_t split_any, int slack) {
  for (int k = 0; k <= slack; ++k) {
    if (!((split_any >> k) & 1u)) return w0 + k;
  }
  return w0;
}

// Workspace slots sequence b uses: its pieces if split, none if written directly.
FLASH_MLA_HD int slots_of(int pieces) { return pieces > 1 ? pieces : 0; }

// Fills the record of part p from the cost prefix and the width. kFirstSlot holds, for now, the
// piece index of the first sequence within that sequence (or -1 when it is not split);
// finish_record() turns it into a slot once the slot prefix exists. Two steps because the device
// kernel computes the slot prefix in the buffer that held the cost prefix.
FLASH_MLA_HD void make_record(const int32_t* prefix, int batch, int num_parts, int width,
                              int overhead, int p, int32_t* record) {
  const int total = prefix[batch];
  const int x0 = p * width < total ? p * width : total;
  const int x1 = (p + 1) * width < total ? (p + 1) * width : total;
  const BlockPos begin = first_block_at(prefix, batch, x0, overhead);
  const BlockPos end = first_block_at(prefix, batch, x1, overhead);
  const bool idle = begin.batch == end.batch && begin.block == end.block;

  int piece = -1;
  int combine_batch = -1;
  if (!idle && num_pieces(prefix, begin.batch, width, overhead) > 1) {
    piece = p - part_of(prefix[begin.batch] + overhead, width);
    if (part_of(prefix[begin.batch + 1] - 1, width) == p) combine_batch = begin.batch;
  }
  record[static_cast<int>(Field::kBeginBatch)] = begin.batch;
  record[static_cast<int>(Field::kBeginBlock)] = begin.block;
  record[static_cast<int>(Field::kEndBatch)] = end.batch;
  record[static_cast<int>(Field::kEndBlock)] = end.block;
  record[static_cast<int>(Field::kFirstSlot)] = piece;
  record[static_cast<int>(Field::kIdle)] = idle ? 1 : 0;
  record[static_cast<int>(Field::kNumParts)] = num_parts;
  record[static_cast<int>(Field::kCombineBatch)] = combine_batch;
}

// slot_prefix = num_splits: first workspace slot of each sequence (slot_prefix[batch] slots in
// all, none when nothing is split).
FLASH_MLA_HD void finish_record(const int32_t* slot_prefix, int batch, int32_t* record) {
  int32_t& first = record[static_cast<int>(Field::kFirstSlot)];
  if (first >= 0) first += slot_prefix[record[static_cast<int>(Field::kBeginBatch)]];
  if (slot_prefix[batch] == 0) record[static_cast<int>(Field::kCombineBatch)] = kNothingSplit;
}

}  // namespace flash_mla::sched
