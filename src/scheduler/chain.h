// The packed ("chain") schedule: fewer split sequences when the batch is about a sequence a part.
//
// The line schedule of schedule.h cuts the batch, in batch order, at every multiple of the width:
// with lengths that differ, nearly every part boundary splits a sequence, and each piece costs a
// second Q load, an epilogue and fp32 partials written and read back. The chain schedule packs
// parts from the sorted lengths instead, and takes the sequences in the order it packed them:
//
//   - a part takes the longest whole sequence that still fits its target load (pages + overhead
//     per segment), while one does, and is closed when it is within `tol` of the target;
//   - when none fits, the longest sequence left is cut to fill the part exactly, and its rest
//     opens the next part (so a split sequence's pieces lie in consecutive parts, first piece
//     last in its part and later pieces first in theirs, as in the line schedule);
//   - the targets tried are the balanced load plus 0..kChainTargets - 1, for each tolerance of
//     chain_tolerance(); per tolerance the smallest target that needs at most num_parts parts
//     counts, and the least maximum load wins (then fewer split pieces, then the smaller
//     tolerance).
//
// Every fill is a chain_fill over a "picker", the one step that differs between host and device:
// take the longest free sequence with at most `room` pages. The host twin scans a bitmap; the
// device runs each candidate on one warp, the bitmap spread over the lanes (metadata_kernel.cu).
// A fill writes a ChainTrace (walk order, part starts), from which chain_record() writes any
// record on its own.
//
// The walk order is a permutation of the batch, kept in the records themselves: record fields
// kBeginBatch / kEndBatch hold positions in that order, and positions 2w and 2w + 1 share order
// word w (16 bits each, bit 31 set), which is field kIdle of record w (w < P) or field kNumParts
// of record w - P; the last record keeps its kNumParts tag. A negative kIdle in record 0 marks
// the mode. So the chain schedule needs batch <= 2 (2 P - 1) (chain_capacity); use_chain() says
// where it applies. docs/design.md, "The schedule"; docs/perf-notes.md, "The chain schedule".
#pragma once

#include <cstdint>

#include "scheduler/schedule.h"

namespace flash_mla::sched {

// The device's buffers (metadata_kernel.cu, about 72 KiB of shared memory): traces of up to
// kChainMaxParts parts; up to kChainMaxBatch sequences, 16 lanes of 32 entries in the warp picker
// (the value the 2 P - 1 rule gave at 256 parts, kept when the walk order was packed two a word);
// a count table up to a room of kChainMaxRoom pages.
inline constexpr int kChainMaxParts = 256;
inline constexpr int kChainMaxBatch = 511;
inline constexpr int kChainMaxRoom = 8191;
static_assert(kChainMaxBatch < (1 << 15), "walk-order entries take 15 bits (chain_order_word)");
inline constexpr int kChainMinRows = 33;  // 16 and 32 rows measured no gain
inline constexpr int kChainTolerances = 2;
inline constexpr int kChainTargets = 8;
inline constexpr int kChainCandidates = kChainTolerances * kChainTargets;  // a warp each (GPU)
inline constexpr int kChainWords = (kChainMaxBatch + 31) / 32;              // a lane each (GPU)

// Tolerances 0, 2 and 5 gave the same fills on the seeded Normal batches of the host model (with
// an overhead of 5 or 6 a part within 5 of its target has no room for a page anyway), 12 fewer
// pieces at a slightly higher load; both kinds are tried.
FLASH_MLA_HD int chain_tolerance(int i) { return i == 0 ? 0 : 12; }

// The base target: the balanced load, at least one page beyond the overhead.
FLASH_MLA_HD int chain_base_target(int total_cost, int num_parts, int overhead) {
  const int balanced = part_width(total_cost, num_parts);
  return balanced > overhead + 1 ? balanced : overhead + 1;
}

// The most pages a fill ever looks for: the largest target less one part's overhead.
FLASH_MLA_HD int chain_max_room(int total_cost, int num_parts, int overhead) {
  return chain_base_target(total_cost, num_parts, overhead) + kChainTargets - 1 - overhead;
}

// How many walk positions the records of num_parts parts can hold: two in each of the 2 P - 1
// order words.
FLASH_MLA_HD int chain_capacity(int num_parts) { return 2 * (2 * num_parts - 1); }

// Whether the chain schedule replaces the line schedule: the line one splits some sequence, the
// nonempty sequences are not all of one page count (with equal counts the chain's fill cuts
// the same pieces at the same loads, so it would only cost the metadata kernel), there are more
// than 32 rows (at 16 and 32 it gained nothing on an H100 and would cost the metadata
// kernel 40 us), the batch is between 3/4 of a sequence a part (with fewer, the
// model's load did not predict the time: -7% at b = 4 and 8 with 64 parts on an H100) and the
// chain_capacity the records can order, and the device's buffers hold the batch, the parts and
// the largest room.
FLASH_MLA_HD bool use_chain(int batch, int num_parts, int rows_per_kv_head, bool line_splits,
                            bool equal_pages, int total_cost) {
  if (!line_splits || equal_pages || rows_per_kv_head < kChainMinRows || batch < 2) return false;
  if (num_parts > kChainMaxParts || batch > kChainMaxBatch ||
      batch > chain_capacity(num_parts) || 4 * batch < 3 * num_parts) {
    return false;
  }
  return chain_max_room(total_cost, num_parts, fixed_overhead_blocks(rows_per_kv_head)) <=
         kChainMaxRoom;
}

struct ChainStats {
  int parts;     // parts used; more than the limit when the fill failed
  int max_load;  // the largest pages + overhead * segments of a part
  int pieces;    // segments of split sequences
};

// What a fill did. order: walk position -> index into the sorted lengths (kChainMaxBatch
// entries). start: part -> its first position | (piece index within that sequence) << 16, bit 31
// set when that piece is its sequence's last of several (kChainMaxParts entries). block: part ->
// the first page block of that piece.
struct ChainTrace {
  uint16_t* order;
  uint32_t* start;
  int32_t* block;
};
inline constexpr uint32_t kChainLastPiece = 1u << 31;
FLASH_MLA_HD uint32_t chain_pack_start(int pos, int piece, bool last) {
  return static_cast<uint32_t>(pos) | static_cast<uint32_t>(piece) << 16 |
         (last ? kChainLastPiece : 0u);
}
FLASH_MLA_HD int chain_start_pos(uint32_t start) { return static_cast<int>(start & 0xffffu); }
FLASH_MLA_HD int chain_start_piece(uint32_t start) {
  return static_cast<int>((start & ~kChainLastPiece) >> 16);
}
FLASH_MLA_HD bool chain_start_last(uint32_t start) { return (start & kChainLastPiece) != 0; }

// One fill of at most `limit` parts at a target load over n nonempty sequences. The picker's
// int take(int room, bool* whole, int* pages) takes the highest sorted index still free whose
// pages are <= room (*whole = true) or, when none fits, the highest one still free (*whole =
// false; the fill calls it only while some sequence is free), and returns it and its pages.
// Every caller writes the trace: on the device every lane of the warp, the same values to the
// same addresses, so that no store sits behind a divergent branch (metadata_kernel.cu).
template <class Picker>
FLASH_MLA_HD ChainStats chain_fill(Picker& picker, int n, int overhead, int target, int tol,
                                   int limit, ChainTrace trace) {
  ChainStats s{0, 0, 0};
  int remaining = n, pos = 0;
  int carry_pos = -1, carry_rest = 0, carry_block = 0, carry_pieces = 0;
  while (remaining > 0 || carry_pos >= 0) {
    if (s.parts >= limit) {
      s.parts = limit + 1;
      return s;
    }
    int load = 0;
    if (carry_pos >= 0) {  // the part opens with the next piece of the sequence cut last
      const bool last = carry_rest + overhead <= target;
      trace.start[s.parts] = chain_pack_start(carry_pos, carry_pieces, last);
      trace.block[s.parts] = carry_block;
      if (!last) {
        carry_block += target - overhead;
        carry_rest -= target - overhead;
        ++carry_pieces;
        s.max_load = s.max_load > target ? s.max_load : target;
        ++s.parts;
        continue;
      }
      load = carry_rest + overhead;
      s.pieces += carry_pieces + 1;
      carry_pos = -1;
    } else {
      trace.start[s.parts] = chain_pack_start(pos, 0, false);
      trace.block[s.parts] = 0;
    }
    while (remaining > 0 && target - load - overhead >= 1) {
      const int room = target - load - overhead;
      bool whole = false;
      int pages = 0;
      const int k = picker.take(room, &whole, &pages);
      --remaining;
      trace.order[pos] = static_cast<uint16_t>(k);
      if (whole) {
        ++pos;
        load += pages + overhead;
        if (target - load <= tol) break;
      } else {  // cut: the first piece ends this part, the rest opens the next
        carry_pos = pos++;
        carry_block = room;
        carry_rest = pages - room;
        carry_pieces = 1;
        load = target;
        break;
      }
    }
    s.max_load = s.max_load > load ? s.max_load : load;
    ++s.parts;
  }
  return s;
}

// Candidate c: tolerance chain_tolerance(c / kChainTargets), target base + c % kChainTargets.
FLASH_MLA_HD int chain_candidate_target(int base, int c) { return base + c % kChainTargets; }
FLASH_MLA_HD int chain_candidate_tolerance(int c) { return chain_tolerance(c / kChainTargets); }

// Whether candidate a's statistics beat b's; per tolerance, only its smallest feasible target
// takes part (chain_pick).
FLASH_MLA_HD bool chain_better(const ChainStats& a, const ChainStats& b) {
  return a.max_load != b.max_load ? a.max_load < b.max_load : a.pieces < b.pieces;
}

// The winning candidate among stats[0 .. kChainCandidates), or -1 when no fill fits.
FLASH_MLA_HD int chain_pick(const ChainStats* stats, int num_parts) {
  int best = -1;
  for (int t = 0; t < kChainTolerances; ++t) {
    for (int d = 0; d < kChainTargets; ++d) {
      const int c = t * kChainTargets + d;
      if (stats[c].parts > num_parts) continue;
      if (best < 0 || chain_better(stats[c], stats[best])) best = c;
      break;
    }
  }
  return best;
}

// The sequence at walk position pos: sorted_batch holds the n nonempty sequences by (pages,
// batch index), then the empty ones in batch order; they follow the packed ones in the walk.
FLASH_MLA_HD int chain_walk_batch(const ChainTrace& trace, const int* sorted_batch, int n,
                                  int pos) {
  return sorted_batch[pos < n ? trace.order[pos] : pos];
}

// Slots of the sequence whose last piece opens part p (the pieces it has), or 0 when part p
// opens with no such piece: setting these per sequence and taking the exclusive prefix over the
// batch gives num_splits.
FLASH_MLA_HD int chain_slots_closed_by(const ChainTrace& trace, int p) {
  const uint32_t start = trace.start[p];
  return chain_start_last(start) ? slots_of(chain_start_piece(start) + 1) : 0;
}

// Where order word w lives in the records.
FLASH_MLA_HD int chain_order_index(int num_parts, int w) {
  return w < num_parts ? w * kNumFields + static_cast<int>(Field::kIdle)
                       : (w - num_parts) * kNumFields + static_cast<int>(Field::kNumParts);
}

// Order word w of the walk: positions 2w (bits 0-15) and 2w + 1 (bits 16-30, 0 past the batch),
// bit 31 set so that every order word is negative.
FLASH_MLA_HD int32_t chain_order_word(const ChainTrace& trace, const int* sorted_batch, int n,
                                      int batch, int w) {
  const uint32_t first = static_cast<uint32_t>(chain_walk_batch(trace, sorted_batch, n, 2 * w));
  const uint32_t second =
      2 * w + 1 < batch
          ? static_cast<uint32_t>(chain_walk_batch(trace, sorted_batch, n, 2 * w + 1))
          : 0u;
  return static_cast<int32_t>(0x80000000u | second << 16 | first);
}

// Writes record p of the winning fill (`parts` parts used). num_splits: the slot prefix
// (batch + 1 entries), complete.
FLASH_MLA_HD void chain_record(const ChainTrace& trace, int parts, const int* sorted_batch, int n,
                               int batch, int num_parts, const int32_t* num_splits, int p,
                               int32_t* record) {
  const bool nothing_split = num_splits[batch] == 0;
  int begin_pos = n, begin_block = 0, first_slot = -1, combine_batch = -1;
  if (p < parts) {
    const uint32_t start = trace.start[p];
    begin_pos = chain_start_pos(start);
    begin_block = trace.block[p];
    const int b = chain_walk_batch(trace, sorted_batch, n, begin_pos);
    const bool split = num_splits[b + 1] > num_splits[b];
    if (split) {
      first_slot = num_splits[b] + chain_start_piece(start);
      if (chain_start_last(start)) combine_batch = b;
    }
  }
  const bool more = p + 1 < parts;  // the last part (and every idle one) ends at the walk's end
  record[static_cast<int>(Field::kBeginBatch)] = begin_pos;
  record[static_cast<int>(Field::kBeginBlock)] = begin_block;
  record[static_cast<int>(Field::kEndBatch)] = more ? chain_start_pos(trace.start[p + 1]) : n;
  record[static_cast<int>(Field::kEndBlock)] = more ? trace.block[p + 1] : 0;
  record[static_cast<int>(Field::kFirstSlot)] = first_slot;
  record[static_cast<int>(Field::kCombineBatch)] = nothing_split ? kNothingSplit : combine_batch;
  const int words = (batch + 1) / 2;  // at most 2 P - 1: the last record keeps its tag
  record[static_cast<int>(Field::kIdle)] =
      p < words ? chain_order_word(trace, sorted_batch, n, batch, p) : (p < parts ? 0 : 1);
  record[static_cast<int>(Field::kNumParts)] =
      p + num_parts < words ? chain_order_word(trace, sorted_batch, n, batch, p + num_parts)
                            : num_parts;
}

// Whether the records hold a chain schedule (record 0's kIdle is a walk-order entry).
FLASH_MLA_HD bool is_chain(const int32_t* metadata) {
  return metadata[static_cast<int>(Field::kIdle)] < 0;
}

// The sequence at walk position pos (< chain_capacity) of a chain schedule's records.
FLASH_MLA_HD int chain_batch(const int32_t* metadata, int num_parts, int pos) {
  const uint32_t word = static_cast<uint32_t>(metadata[chain_order_index(num_parts, pos >> 1)]);
  return static_cast<int>((pos & 1) != 0 ? (word >> 16) & 0x7fffu : word & 0xffffu);
}

}  // namespace flash_mla::sched
