// Host twin of the metadata kernel: the same closed forms of schedule.h, evaluated serially.
#include "scheduler/metadata.h"

#include <algorithm>
#include <climits>
#include <numeric>
#include <vector>

#include "scheduler/chain.h"
#include "scheduler/schedule.h"

namespace flash_mla::detail {

namespace {

// The host picker of chain_fill: a bitmap of the sorted lengths taken, scanned serially.
class HostChainPicker {
 public:
  HostChainPicker(const int* sorted_pages, int n) : sorted_pages_(sorted_pages), n_(n) {}
  int take(int room, bool* whole, int* pages) {
    const int* fitting_end = std::upper_bound(sorted_pages_, sorted_pages_ + n_, room);
    const int fit = highest_free_below(static_cast<int>(fitting_end - sorted_pages_));
    *whole = fit >= 0;
    const int k = *whole ? fit : highest_free_below(n_);
    taken_[k] = true;
    *pages = sorted_pages_[k];
    return k;
  }

 private:
  int highest_free_below(int hi) const {
    for (int k = hi - 1; k >= 0; --k) {
      if (!taken_[k]) return k;
    }
    return -1;
  }
  const int* sorted_pages_;
  int n_;
  std::vector<bool> taken_ = std::vector<bool>(static_cast<size_t>(n_), false);
};

// The chain schedule (chain.h), serially; false when no fill fits num_parts.
bool chain_schedule(const int32_t* cache_seqlens, int batch, int overhead, int total_cost,
                    int num_parts, int32_t* metadata, int32_t* num_splits) {
  std::vector<int> sorted_batch(batch);
  std::iota(sorted_batch.begin(), sorted_batch.end(), 0);
  std::vector<int> pages(batch);
  for (int b = 0; b < batch; ++b) pages[b] = sched::num_page_blocks(cache_seqlens[b]);
  // Nonempty sequences by (pages, batch), then the empty ones in batch order.
  std::stable_sort(sorted_batch.begin(), sorted_batch.end(), [&](int a, int b) {
    if ((pages[a] == 0) != (pages[b] == 0)) return pages[b] == 0;
    return pages[a] < pages[b];
  });
  const int n = static_cast<int>(
      std::count_if(pages.begin(), pages.end(), [](int p) { return p > 0; }));
  std::vector<int> sorted_pages(n);
  for (int i = 0; i < n; ++i) sorted_pages[i] = pages[sorted_batch[i]];

  const int base = sched::chain_base_target(total_cost, num_parts, overhead);
  std::vector<uint16_t> order(static_cast<size_t>(sched::kChainCandidates) * batch);
  std::vector<uint32_t> start(static_cast<size_t>(sched::kChainCandidates) * num_parts);
  std::vector<int32_t> block(start.size());
  auto trace_of = [&](int c) {
    return sched::ChainTrace{order.data() + static_cast<size_t>(c) * batch,
                             start.data() + static_cast<size_t>(c) * num_parts,
                             block.data() + static_cast<size_t>(c) * num_parts};
  };
  std::vector<sched::ChainStats> stats(sched::kChainCandidates);
  for (int c = 0; c < sched::kChainCandidates; ++c) {
    HostChainPicker picker(sorted_pages.data(), n);
    stats[c] = sched::chain_fill(picker, n, overhead, sched::chain_candidate_target(base, c),
                                 sched::chain_candidate_tolerance(c), num_parts, trace_of(c));
  }
  const int pick = sched::chain_pick(stats.data(), num_parts);
  if (pick < 0) return false;
  const sched::ChainTrace trace = trace_of(pick);
  const int parts = stats[pick].parts;

  std::fill(num_splits, num_splits + batch + 1, 0);
  for (int p = 0; p < parts; ++p) {
    const int pos = sched::chain_start_pos(trace.start[p]);
    const int slots = sched::chain_slots_closed_by(trace, p);
    if (slots > 0) {
      num_splits[sched::chain_walk_batch(trace, sorted_batch.data(), n, pos) + 1] = slots;
    }
  }
  for (int b = 0; b < batch; ++b) num_splits[b + 1] += num_splits[b];
  for (int p = 0; p < num_parts; ++p) {
    sched::chain_record(trace, parts, sorted_batch.data(), n, batch, num_parts, num_splits, p,
                        metadata + static_cast<size_t>(p) * sched::kNumFields);
  }
  return true;
}

}  // namespace

void compute_metadata_host(const int32_t* cache_seqlens, int batch, int rows_per_kv_head,
                           int num_parts, int32_t* metadata, int32_t* num_splits,
                           bool allow_chain) {
  std::vector<int32_t> prefix(static_cast<size_t>(batch) + 1, 0);
  const int overhead = sched::fixed_overhead_blocks(rows_per_kv_head);
  for (int b = 0; b < batch; ++b) {
    prefix[b + 1] = prefix[b] + sched::sequence_cost(cache_seqlens[b], overhead);
  }

  const int w0 = sched::part_width(prefix[batch], num_parts);
  const int slack = sched::split_slack(rows_per_kv_head, w0);
  int max_blocks = 0, min_blocks = INT_MAX;  // min_blocks: of the nonempty sequences
  for (int b = 0; b < batch; ++b) {
    const int blocks = sched::num_page_blocks(cache_seqlens[b]);
    max_blocks = std::max(max_blocks, blocks);
    if (blocks > 0) min_blocks = std::min(min_blocks, blocks);
  }
  uint32_t split_any = ~0u;
  if (sched::whole_widths_possible(max_blocks, w0, slack)) {
    split_any = 0;
    for (int b = 0; b < batch; ++b) {
      split_any |= sched::split_widths(prefix[b], prefix[b + 1], w0, slack, overhead);
    }
  }
  const int width = sched::choose_width(w0, split_any, slack);
  const bool line_splits = ((split_any >> (width - w0)) & 1u) != 0;
  if (allow_chain &&
      sched::use_chain(batch, num_parts, rows_per_kv_head, line_splits, min_blocks == max_blocks,
                       prefix[batch]) &&
      chain_schedule(cache_seqlens, batch, overhead, prefix[batch], num_parts, metadata,
                     num_splits)) {
    return;
  }
  for (int p = 0; p < num_parts; ++p) {
    sched::make_record(prefix.data(), batch, num_parts, width, overhead, p,
                       metadata + static_cast<size_t>(p) * sched::kNumFields);
  }
  num_splits[0] = 0;
  for (int b = 0; b < batch; ++b) {
    num_splits[b + 1] =
        num_splits[b] + sched::slots_of(sched::num_pieces(prefix.data(), b, width, overhead));
  }
  for (int p = 0; p < num_parts; ++p) {
    sched::finish_record(num_splits, batch, metadata + static_cast<size_t>(p) * sched::kNumFields);
  }
}

}  // namespace flash_mla::detail
