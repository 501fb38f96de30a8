// Host twin of the metadata kernel: the same closed forms of schedule.h, evaluated serially.
#include "scheduler/metadata.h"

#include <algorithm>
#include <vector>

#include "scheduler/schedule.h"

namespace flash_mla::detail {

void compute_metadata_host(const int32_t* cache_seqlens, int batch, int rows_per_kv_head,
                           int num_parts, int32_t* metadata, int32_t* num_splits) {
  std::vector<int32_t> prefix(static_cast<size_t>(batch) + 1, 0);
  const int overhead = sched::fixed_overhead_blocks(rows_per_kv_head);
  for (int b = 0; b < batch; ++b) {
    prefix[b + 1] = prefix[b] + sched::sequence_cost(cache_seqlens[b], overhead);
  }

  const int w0 = sched::part_width(prefix[batch], num_parts);
  const int slack = sched::split_slack(rows_per_kv_head, w0);
  int max_blocks = 0;
  for (int b = 0; b < batch; ++b) {
    max_blocks = std::max(max_blocks, sched::num_page_blocks(cache_seqlens[b]));
  }
  uint32_t split_any = ~0u;
  if (sched::whole_widths_possible(max_blocks, w0, slack)) {
    split_any = 0;
    for (int b = 0; b < batch; ++b) {
      split_any |= sched::split_widths(prefix[b], prefix[b + 1], w0, slack, overhead);
    }
  }
  const int width = sched::choose_width(w0, split_any, slack);
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
