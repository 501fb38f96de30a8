// Properties of the split-KV schedule (SPEC §4, src/scheduler/schedule.h), checked on the host
// twin compute_metadata_host by walking each part's record exactly as the decode kernel does.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "scheduler/chain.h"
#include "scheduler/metadata.h"
#include "scheduler/schedule.h"

namespace flash_mla {
namespace {

using sched::Field;
// The fixed cost per sequence on the line at 16 rows (the default rows of these tests).
const int kOverhead = sched::fixed_overhead_blocks(16);

int field(const int32_t* record, Field f) { return record[static_cast<int>(f)]; }
int64_t blocks_of(int seqlen) { return seqlen > 0 ? (seqlen + 63) / 64 : 0; }

// One contiguous run of page blocks [j0, j1) of sequence b handled by one part.
struct Segment {
  int part, batch, j0, j1, slot;  // slot -1: written directly to out
  bool first_of_part;
};

struct Schedule {
  std::vector<int32_t> metadata, num_splits;
  std::vector<Segment> segments;
};

// Runs the host schedule and walks every record the way the decode kernel reads it.
Schedule make_and_walk(const std::vector<int32_t>& seqlens, int num_parts, int rows = 16,
                       bool allow_chain = true) {
  const int batch = static_cast<int>(seqlens.size());
  Schedule s;
  s.metadata.assign(static_cast<size_t>(num_parts) * sched::kNumFields, -7);
  s.num_splits.assign(batch + 1, -7);
  detail::compute_metadata_host(seqlens.data(), batch, rows, num_parts, s.metadata.data(),
                                s.num_splits.data(), allow_chain);
  const bool chain = sched::is_chain(s.metadata.data());
  for (int p = 0; p < num_parts; ++p) {
    const int32_t* record = &s.metadata[static_cast<size_t>(p) * sched::kNumFields];
    const int begin_pos = field(record, Field::kBeginBatch);
    const int end_pos = field(record, Field::kEndBatch);
    if (begin_pos == end_pos &&
        field(record, Field::kBeginBlock) == field(record, Field::kEndBlock)) {
      continue;  // idle
    }
    bool first = true;
    for (int x = begin_pos; x <= std::min(end_pos, batch - 1); ++x) {
      const int b = chain ? sched::chain_batch(s.metadata.data(), num_parts, x) : x;
      EXPECT_TRUE(b >= 0 && b < batch) << "part " << p << ", position " << x;
      if (b < 0 || b >= batch) continue;
      const int j0 = x == begin_pos ? field(record, Field::kBeginBlock) : 0;
      const int j1 = x == end_pos ? field(record, Field::kEndBlock)
                                  : static_cast<int>(blocks_of(seqlens[b]));
      if (j0 >= j1) continue;
      const bool split = s.num_splits[b + 1] - s.num_splits[b] > 0;
      const int first_slot = field(record, Field::kFirstSlot);
      const int slot = !split ? -1
                       : (x == begin_pos && first_slot >= 0) ? first_slot
                                                             : s.num_splits[b];
      s.segments.push_back({p, b, j0, j1, slot, first});
      first = false;
    }
  }
  return s;
}

// The width schedule.h promises, computed here by brute force: the balanced ceil(total / parts),
// or the narrowest width up to a slack wider under which every sequence's blocks fall in one
// part. The slack is 2 (1 + min(rows, 96) / 10) positions, and with at most 64 rows at least
// balanced / 32; never more than the balanced width itself, nor more than 31.
int64_t expected_width(const std::vector<int64_t>& prefix, int num_parts, int rows) {
  const int overhead = sched::fixed_overhead_blocks(rows);
  const int64_t total = prefix.back();
  const int64_t balanced = total > 0 ? (total + num_parts - 1) / num_parts : 1;
  int64_t slack = 2 * (1 + std::min(rows, 96) / 10);
  if (rows <= sched::kMemoryBoundRows) {
    slack = std::max<int64_t>(slack, balanced / sched::kProportionalSlackDivisor);
  }
  slack = std::min<int64_t>(std::min<int64_t>(slack, balanced), sched::kMaxSplitSlack);
  for (int64_t w = balanced; w <= balanced + slack; ++w) {
    bool whole = true;
    for (size_t b = 0; b + 1 < prefix.size() && whole; ++b) {
      if (prefix[b + 1] == prefix[b]) continue;  // empty
      whole = (prefix[b] + overhead) / w == (prefix[b + 1] - 1) / w;
    }
    if (whole) return w;
  }
  return balanced;
}

// pages + overhead per segment of each part (the cost chain.h balances).
std::vector<int64_t> part_loads(const Schedule& s, int num_parts, int rows) {
  std::vector<int64_t> load(num_parts, 0);
  for (const Segment& seg : s.segments) {
    load[seg.part] += seg.j1 - seg.j0 + sched::fixed_overhead_blocks(rows);
  }
  return load;
}

// A chain schedule's balance: no part above the largest target tried (chain.h), and a split
// sequence's pieces in consecutive parts, the first one last in its part.
void check_chain_loads(const Schedule& s, const std::vector<int32_t>& seqlens, int num_parts,
                       int rows) {
  const int overhead = sched::fixed_overhead_blocks(rows);
  int64_t total = 0;
  for (int32_t len : seqlens) total += blocks_of(len) > 0 ? blocks_of(len) + overhead : 0;
  const int64_t bound =
      sched::chain_base_target(static_cast<int>(total), num_parts, overhead) +
      sched::kChainTargets - 1;
  const std::vector<int64_t> load = part_loads(s, num_parts, rows);
  for (int p = 0; p < num_parts; ++p) ASSERT_LE(load[p], bound) << "part " << p;
  std::vector<std::vector<const Segment*>> by_batch(seqlens.size());
  for (const Segment& seg : s.segments) by_batch[seg.batch].push_back(&seg);
  for (size_t b = 0; b < by_batch.size(); ++b) {
    const auto& pieces = by_batch[b];
    for (size_t k = 1; k < pieces.size(); ++k) {
      ASSERT_EQ(pieces[k]->part, pieces[k - 1]->part + 1) << "b=" << b;
      ASSERT_TRUE(pieces[k]->first_of_part) << "b=" << b;
    }
  }
}

// Checks every property of one schedule; `what` names the case in failure messages.
void check_schedule(const std::vector<int32_t>& seqlens, int num_parts, const std::string& what,
                    int rows = 16) {
  SCOPED_TRACE(what);
  const int batch = static_cast<int>(seqlens.size());
  const Schedule s = make_and_walk(seqlens, num_parts, rows);

  // num_splits: a prefix over the batch, at most two slots per part.
  ASSERT_EQ(s.num_splits[0], 0);
  for (int b = 0; b < batch; ++b) ASSERT_LE(s.num_splits[b], s.num_splits[b + 1]) << "b=" << b;
  EXPECT_LE(s.num_splits[batch], 2 * num_parts);

  // Records: the consistency tag, and idle exactly when the part has no block. A chain schedule
  // keeps its walk order, a permutation of the batch, two positions a word, in kIdle of records
  // [0, words) and kNumParts of records [0, words - P), words = ceil(batch / 2) <= 2 P - 1.
  const bool chain = sched::is_chain(s.metadata.data());
  if (chain) {
    const int overhead = sched::fixed_overhead_blocks(rows);
    int total = 0;
    for (int32_t len : seqlens) total += sched::sequence_cost(len, overhead);
    int min_blocks = 0, max_blocks = 0;
    for (int32_t len : seqlens) {
      const int blocks = sched::num_page_blocks(len);
      max_blocks = std::max(max_blocks, blocks);
      if (blocks > 0) min_blocks = min_blocks > 0 ? std::min(min_blocks, blocks) : blocks;
    }
    ASSERT_TRUE(sched::use_chain(batch, num_parts, rows, true, min_blocks == max_blocks, total));
    std::vector<int> seen(batch, 0);
    for (int x = 0; x < batch; ++x) {
      const int b = sched::chain_batch(s.metadata.data(), num_parts, x);
      ASSERT_TRUE(b >= 0 && b < batch) << "position " << x;
      ASSERT_EQ(++seen[b], 1) << "b=" << b << " twice in the walk order";
    }
  }
  std::vector<int> segments_per_part(num_parts, 0);
  for (const Segment& seg : s.segments) ++segments_per_part[seg.part];
  for (int p = 0; p < num_parts; ++p) {
    const int32_t* record = &s.metadata[static_cast<size_t>(p) * sched::kNumFields];
    if (!chain || p + num_parts >= (batch + 1) / 2) {
      ASSERT_EQ(field(record, Field::kNumParts), num_parts) << "part " << p;
    }
    const bool empty_range =
        field(record, Field::kBeginBatch) == field(record, Field::kEndBatch) &&
        field(record, Field::kBeginBlock) == field(record, Field::kEndBlock);
    const bool idle = chain ? empty_range : field(record, Field::kIdle) != 0;
    if (!idle) {
      EXPECT_GT(segments_per_part[p], 0) << "part " << p;
    }
  }

  // Combine duty: each split sequence is named by exactly one part (the one holding its last
  // piece, as that part's first segment), and no unsplit sequence by any. When nothing is split
  // every record says so (the split kernels then launch the combine kernel early).
  std::vector<int> combined_by(batch, 0);
  const bool nothing_split = s.num_splits[batch] == 0;
  for (int p = 0; p < num_parts; ++p) {
    const int32_t* record = &s.metadata[static_cast<size_t>(p) * sched::kNumFields];
    const int cb = field(record, Field::kCombineBatch);
    EXPECT_EQ(cb == sched::kNothingSplit, nothing_split) << "part " << p << ": " << cb;
    if (cb < 0) {
      EXPECT_TRUE(cb == -1 || cb == sched::kNothingSplit) << "part " << p << ": " << cb;
      continue;
    }
    ASSERT_LT(cb, batch) << "part " << p;
    const int begin = field(record, Field::kBeginBatch);
    EXPECT_EQ(cb, chain ? sched::chain_batch(s.metadata.data(), num_parts, begin) : begin)
        << "part " << p;
    ++combined_by[cb];
  }
  for (int b = 0; b < batch; ++b) {
    const bool split = s.num_splits[b + 1] > s.num_splits[b];
    EXPECT_EQ(combined_by[b], split ? 1 : 0) << "b=" << b;
  }

  // Coverage: each sequence's segments tile [0, blocks) exactly once, and its slots.
  std::vector<std::vector<Segment>> by_batch(batch);
  for (const Segment& seg : s.segments) by_batch[seg.batch].push_back(seg);
  for (int b = 0; b < batch; ++b) {
    std::vector<Segment>& pieces = by_batch[b];
    std::sort(pieces.begin(), pieces.end(),
              [](const Segment& x, const Segment& y) { return x.j0 < y.j0; });
    int64_t next = 0;
    for (const Segment& seg : pieces) {
      ASSERT_EQ(seg.j0, next) << "b=" << b << ": gap or overlap at block " << next;
      next = seg.j1;
    }
    ASSERT_EQ(next, blocks_of(seqlens[b])) << "b=" << b << " not fully covered";

    const int slots = s.num_splits[b + 1] - s.num_splits[b];
    if (pieces.size() <= 1) {
      ASSERT_EQ(slots, 0) << "b=" << b << " is unsplit but takes slots";
      continue;
    }
    ASSERT_EQ(static_cast<int>(pieces.size()), slots) << "b=" << b;
    std::vector<int> used;
    for (const Segment& seg : pieces) used.push_back(seg.slot);
    std::sort(used.begin(), used.end());
    for (int k = 0; k < slots; ++k) ASSERT_EQ(used[k], s.num_splits[b] + k) << "b=" << b;
  }

  // Balance, exactly as schedule.h defines it: block j of b sits at position C[b] + V + j
  // (V = fixed_overhead_blocks(rows)) and part p owns positions [p W, (p + 1) W), W the
  // expected width (balanced, or split-free within the slack). So every covered block is inside
  // its part's window, and blocks plus the overhead positions inside the window (the "V per
  // segment that starts at block 0", of which only the part's first segment can lose some to
  // the previous part) never exceed W.
  const int overhead = sched::fixed_overhead_blocks(rows);
  if (chain) {
    check_chain_loads(s, seqlens, num_parts, rows);
    return;
  }
  std::vector<int64_t> prefix(batch + 1, 0);
  for (int b = 0; b < batch; ++b) {
    const int64_t n = blocks_of(seqlens[b]);
    prefix[b + 1] = prefix[b] + (n > 0 ? n + overhead : 0);
  }
  const int64_t width = expected_width(prefix, num_parts, rows);
  std::vector<int64_t> load(num_parts, 0);
  for (const Segment& seg : s.segments) {
    const int64_t x0 = seg.part * width, x1 = x0 + width;
    const int64_t first_pos = prefix[seg.batch] + overhead + seg.j0;
    const int64_t last_pos = prefix[seg.batch] + overhead + seg.j1 - 1;
    ASSERT_TRUE(first_pos >= x0 && last_pos < x1)
        << "part " << seg.part << " holds b=" << seg.batch << " blocks [" << seg.j0 << ", "
        << seg.j1 << ") outside its window";
    load[seg.part] += seg.j1 - seg.j0;
    if (seg.j0 == 0) {
      const int64_t overhead_begin = prefix[seg.batch];
      const int64_t inside = overhead_begin + overhead - std::max(overhead_begin, x0);
      if (!seg.first_of_part) {
        ASSERT_EQ(inside, overhead) << "part " << seg.part;
      }
      load[seg.part] += inside;
    }
  }
  for (int p = 0; p < num_parts; ++p) ASSERT_LE(load[p], width) << "part " << p;
}

// Lengths drawn from a mix of edge values (0, 1, 63, 64, 65, 1e6) and random ranges.
std::vector<int32_t> random_seqlens(int batch, std::mt19937& rng) {
  const int32_t edges[] = {0, 1, 63, 64, 65, 1000000};
  std::uniform_int_distribution<int> pick(0, 9);
  std::uniform_int_distribution<int> short_len(0, 200), long_len(0, 20000);
  std::vector<int32_t> seqlens(batch);
  for (int32_t& len : seqlens) {
    const int k = pick(rng);
    if (k < 6) len = edges[k];
    else if (k < 8) len = short_len(rng);
    else len = long_len(rng);
  }
  return seqlens;
}

TEST(Metadata, RandomLengthsOverBatchesAndPartCounts) {
  std::mt19937 rng(20240611);
  for (int batch : {1, 2, 7, 128, 4096}) {
    for (int num_parts : {1, 3, 64, 132, 264}) {
      for (int trial = 0; trial < 20; ++trial) {
        const std::vector<int32_t> seqlens = random_seqlens(batch, rng);
        check_schedule(seqlens, num_parts,
                       "batch " + std::to_string(batch) + ", parts " +
                           std::to_string(num_parts) + ", trial " + std::to_string(trial));
        if (HasFatalFailure()) return;
      }
    }
  }
}

TEST(Metadata, UniformLengthsIncludingPageBoundaries) {
  for (int len : {1, 63, 64, 65, 127, 128, 129, 4096, 1000000}) {
    for (int batch : {1, 2, 7, 128}) {
      for (int num_parts : {1, 3, 64, 132, 264}) {
        for (int rows : {1, 16, 64, 256}) {
          check_schedule(std::vector<int32_t>(batch, len), num_parts,
                         "len " + std::to_string(len) + ", batch " + std::to_string(batch) +
                             ", parts " + std::to_string(num_parts) + ", rows " +
                             std::to_string(rows),
                         rows);
          if (HasFatalFailure()) return;
        }
      }
    }
  }
}

TEST(Metadata, RandomLengthsWithRowCounts) {
  std::mt19937 rng(20261121);
  for (int rows : {1, 32, 64, 128}) {
    for (int num_parts : {33, 66, 132}) {
      for (int trial = 0; trial < 20; ++trial) {
        check_schedule(random_seqlens(128, rng), num_parts,
                       "rows " + std::to_string(rows) + ", parts " + std::to_string(num_parts) +
                           ", trial " + std::to_string(trial),
                       rows);
        if (HasFatalFailure()) return;
      }
    }
  }
}

// b = 128 equal lengths on 132 parts: the balanced width cuts every sequence (4096 tokens at
// 16 rows cost 69 positions, the balanced width is 67); within the slack a width of 69 serves
// each whole, one per part. With 66 parts (two m-blocks) two per part, with 33 four. With at
// most 64 rows the slack grows with the width: 32768 tokens (517 or 518 against 502 or 503) are
// served whole too. Beyond the slack (65536 tokens at 128 rows on 132 parts: 1030 against 999,
// slack 20) the sequences stay split.
TEST(Metadata, EqualLengthsAreServedWhole) {
  struct Case { int len, num_parts, rows, per_part; };
  for (const Case& c : {Case{4096, 132, 64, 1}, Case{4096, 132, 16, 1}, Case{8192, 132, 16, 1},
                        Case{4096, 66, 128, 2}, Case{16384, 132, 64, 1},
                        Case{4096, 33, 256, 4}, Case{16384, 66, 128, 2},
                        Case{8192, 33, 256, 4}, Case{16384, 132, 16, 1},
                        Case{32768, 132, 16, 1}, Case{32768, 132, 32, 1},
                        Case{32768, 132, 64, 1}}) {
    SCOPED_TRACE("len " + std::to_string(c.len) + ", parts " + std::to_string(c.num_parts));
    const Schedule s = make_and_walk(std::vector<int32_t>(128, c.len), c.num_parts, c.rows);
    EXPECT_EQ(s.num_splits[128], 0);
    EXPECT_EQ(s.segments.size(), 128u);
    std::vector<int> per_part(c.num_parts, 0);
    for (const Segment& seg : s.segments) ++per_part[seg.part];
    for (int p = 0; p < c.num_parts; ++p) EXPECT_LE(per_part[p], c.per_part) << "part " << p;
  }
  const Schedule split = make_and_walk(std::vector<int32_t>(128, 65536), 132, 128);
  EXPECT_GE(split.num_splits[128], 2 * 128);  // each costs more than the width: all split
}

TEST(Metadata, AllEmptyBatchIsAllIdle) {
  for (int batch : {1, 7, 4096}) {
    for (int num_parts : {1, 132}) {
      const std::vector<int32_t> seqlens(batch, 0);
      check_schedule(seqlens, num_parts, "all-zero batch " + std::to_string(batch));
      const Schedule s = make_and_walk(seqlens, num_parts);
      EXPECT_TRUE(s.segments.empty());
      EXPECT_EQ(s.num_splits[batch], 0);
      for (int p = 0; p < num_parts; ++p) {
        EXPECT_EQ(s.metadata[static_cast<size_t>(p) * sched::kNumFields +
                             static_cast<int>(Field::kIdle)], 1);
      }
    }
  }
}

TEST(Metadata, OneLongSequenceIsSpreadByBlocks) {
  // b = 1, 131072 tokens = 2048 blocks over 132 parts: W = ceil((2048 + 5) / 132) = 16.
  const int kParts = 132;
  const std::vector<int32_t> seqlens = {131072};
  check_schedule(seqlens, kParts, "one long sequence");
  const Schedule s = make_and_walk(seqlens, kParts);
  const int max_blocks = (2048 + kOverhead + kParts - 1) / kParts;
  std::vector<int> blocks(kParts, 0);
  for (const Segment& seg : s.segments) blocks[seg.part] += seg.j1 - seg.j0;
  int busy = 0;
  for (int p = 0; p < kParts; ++p) {
    EXPECT_LE(blocks[p], max_blocks) << "part " << p;
    busy += blocks[p] > 0;
  }
  EXPECT_GE(busy, 2048 / max_blocks);  // 128 parts at least, not one part doing it all
  EXPECT_EQ(s.num_splits[1], busy);
}

// A lone short sequence is spread like a long one: the split-free slack (20 positions at 128
// rows) would fit its 10 blocks and overhead in one part, but it is bounded by the balanced width
// (1 here), so the blocks go to 10 parts, not to one.
TEST(Metadata, OneShortSequenceIsSpreadByBlocks) {
  struct Case { int len, num_parts, rows, pieces; };
  for (const Case& c : {Case{640, 66, 128, 10}, Case{512, 132, 64, 8}, Case{256, 132, 32, 4}}) {
    SCOPED_TRACE("len " + std::to_string(c.len) + ", rows " + std::to_string(c.rows));
    check_schedule({c.len}, c.num_parts, "one short sequence", c.rows);
    const Schedule s = make_and_walk({c.len}, c.num_parts, c.rows);
    EXPECT_EQ(s.num_splits[1], c.pieces);
    for (const Segment& seg : s.segments) EXPECT_EQ(seg.j1 - seg.j0, 1) << "part " << seg.part;
  }
  EXPECT_EQ(sched::split_slack(128, 1), 1);
  EXPECT_EQ(sched::split_slack(128, 500), 20);
  EXPECT_EQ(sched::split_slack(16, 3), 3);
  EXPECT_EQ(sched::split_slack(16, 70), 4);
}

// With at most 64 rows (memory-bound) the slack is at least w0 / 32; never above 31, the
// candidate widths' 32-bit mask.
TEST(Metadata, SplitSlackGrowsWithTheWidthUpTo64Rows) {
  EXPECT_EQ(sched::split_slack(64, 503), 15);   // w0 / 32 above the 14 of 64 rows
  EXPECT_EQ(sched::split_slack(16, 502), 15);
  EXPECT_EQ(sched::split_slack(128, 1005), 20);  // no proportional slack above 64 rows
  EXPECT_EQ(sched::split_slack(64, 5000), 31);   // the 32-bit candidate mask
}

TEST(Metadata, ShortSequencesAreNotSplit) {
  // 128 sequences of one block on 132 parts: W = ceil(128 * 6 / 132) = 6, one sequence a part.
  const Schedule s = make_and_walk(std::vector<int32_t>(128, 10), 132);
  EXPECT_EQ(s.num_splits[128], 0);
  EXPECT_EQ(s.segments.size(), 128u);
}

// Lengths as the bench draws them for the SPEC sweep's variable cells: Normal(s_k, s_k / 2),
// truncated at 0.
std::vector<int32_t> normal_seqlens(int batch, int seqlen_k, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<double> normal(seqlen_k, seqlen_k / 2.0);
  std::vector<int32_t> seqlens(batch);
  for (int32_t& len : seqlens) len = std::max(0, static_cast<int>(normal(rng)));
  return seqlens;
}

int split_pieces(const Schedule& s) {
  int pieces = 0;
  for (const Segment& seg : s.segments) pieces += seg.slot >= 0;
  return pieces;
}

// Mixed lengths at 33-128 rows, about a sequence a part: the chain schedule replaces the line
// one, with fewer split pieces and no larger a part (for these seeded batches; chain.h does not
// promise the latter in general).
TEST(Metadata, ChainScheduleSplitsLessWithMixedLengths) {
  struct Case { int rows, num_parts; };
  for (const Case& c : {Case{33, 132}, Case{64, 132}, Case{128, 66}}) {
    for (int seqlen_k : {1024, 4096, 16384}) {
      for (uint32_t seed : {1u, 2u, 3u}) {
        const std::string what = "rows " + std::to_string(c.rows) + ", s_k " +
                                 std::to_string(seqlen_k) + ", seed " + std::to_string(seed);
        SCOPED_TRACE(what);
        const std::vector<int32_t> seqlens = normal_seqlens(128, seqlen_k, seed);
        check_schedule(seqlens, c.num_parts, what, c.rows);
        if (HasFatalFailure()) return;
        const Schedule chain = make_and_walk(seqlens, c.num_parts, c.rows);
        const Schedule line = make_and_walk(seqlens, c.num_parts, c.rows, false);
        ASSERT_TRUE(sched::is_chain(chain.metadata.data()));
        ASSERT_FALSE(sched::is_chain(line.metadata.data()));
        EXPECT_LT(split_pieces(chain), split_pieces(line));
        const std::vector<int64_t> a = part_loads(chain, c.num_parts, c.rows);
        const std::vector<int64_t> b = part_loads(line, c.num_parts, c.rows);
        EXPECT_LE(*std::max_element(a.begin(), a.end()), *std::max_element(b.begin(), b.end()));
      }
    }
  }
}

// Where the chain schedule is not used: 32 rows or fewer, one sequence, batches the line
// schedule serves whole, equal page counts, more sequences than the records can order
// (2 (2 P - 1)), fewer than 3/4 of a sequence a part, more sequences, parts or pages than the
// device's buffers hold.
TEST(Metadata, ChainScheduleOnlyWhereItApplies) {
  const std::vector<int32_t> mixed = normal_seqlens(128, 4096, 7);
  EXPECT_FALSE(sched::is_chain(make_and_walk(mixed, 132, 16).metadata.data()));
  EXPECT_FALSE(sched::is_chain(make_and_walk(mixed, 132, 32).metadata.data()));
  EXPECT_TRUE(sched::is_chain(make_and_walk(mixed, 132, 33).metadata.data()));
  EXPECT_FALSE(sched::is_chain(make_and_walk({100000}, 132, 64).metadata.data()));
  EXPECT_FALSE(
      sched::is_chain(make_and_walk(std::vector<int32_t>(128, 4096), 132, 64).metadata.data()));
  // Equal page counts, which the line schedule splits, with empty sequences among them.
  std::vector<int32_t> equal(128, 32768);
  EXPECT_FALSE(sched::is_chain(make_and_walk(equal, 66, 128).metadata.data()));
  equal[5] = 32705;  // the same 512 pages
  equal[9] = 0;
  EXPECT_FALSE(sched::is_chain(make_and_walk(equal, 66, 128).metadata.data()));
  equal[7] = 32769;  // one page more
  EXPECT_TRUE(sched::is_chain(make_and_walk(equal, 66, 128).metadata.data()));
  EXPECT_TRUE(sched::is_chain(make_and_walk(mixed, 33, 64).metadata.data()));   // 128 <= 130
  EXPECT_FALSE(sched::is_chain(make_and_walk(mixed, 32, 64).metadata.data()));  // 128 > 126
  EXPECT_TRUE(sched::is_chain(make_and_walk(mixed, 170, 64).metadata.data()));  // 4 * 128 >= 510
  EXPECT_FALSE(sched::is_chain(make_and_walk(mixed, 171, 64).metadata.data()));  // 512 < 513
  const std::vector<int32_t> many = normal_seqlens(300, 4096, 7);
  EXPECT_TRUE(sched::is_chain(make_and_walk(many, 256, 64).metadata.data()));
  EXPECT_FALSE(sched::is_chain(make_and_walk(many, 257, 64).metadata.data()));  // > kChainMaxParts
  EXPECT_TRUE(sched::is_chain(make_and_walk(normal_seqlens(511, 4096, 7), 132, 64).metadata.data()));
  EXPECT_FALSE(sched::is_chain(  // > kChainMaxBatch
      make_and_walk(normal_seqlens(512, 4096, 7), 132, 64).metadata.data()));
  EXPECT_FALSE(sched::is_chain(
      make_and_walk(normal_seqlens(128, 1 << 20, 7), 132, 64).metadata.data()));  // room > 8191
}

// Random batches of 2 to 511 sequences, edge lengths and empty ones included, at 64 and 128
// rows: every property check_schedule knows, on chain schedules where they apply.
TEST(Metadata, ChainScheduleRandomBatches) {
  std::mt19937 rng(20261122);
  int chains = 0;
  for (int batch : {2, 3, 7, 33, 50, 64, 99, 131, 200, 263, 262, 511}) {
    for (int num_parts : {3, 66, 132}) {
      for (int rows : {64, 128}) {
        for (int trial = 0; trial < 10; ++trial) {
          const std::vector<int32_t> seqlens = random_seqlens(batch, rng);
          const std::string what = "batch " + std::to_string(batch) + ", parts " +
                                   std::to_string(num_parts) + ", rows " + std::to_string(rows) +
                                   ", trial " + std::to_string(trial);
          check_schedule(seqlens, num_parts, what, rows);
          if (HasFatalFailure()) return;
          chains += sched::is_chain(make_and_walk(seqlens, num_parts, rows).metadata.data());
        }
      }
    }
  }
  EXPECT_GT(chains, 100);  // the cases above are mostly chain schedules
}

}  // namespace
}  // namespace flash_mla
