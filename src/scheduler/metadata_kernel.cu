// The metadata kernel: one CTA evaluates the schedule of schedule.h on the device.
//
// Phase 1  cost prefix C[0..batch] into num_splits (block scans over chunks of kThreads).
// Phase 1b the width: which candidate widths split some sequence (a shared OR over the batch),
//          skipped when the longest sequence rules out every candidate.
// Phase 2  one record per part from C (binary searches, independent per part).
// Phase 3  slot prefix over the pieces of each sequence, in place over C.
// Phase 4  records turn piece indices into slots.
// __syncthreads between phases makes the global writes of one phase visible to the next
// (CUDA C++ Programming Guide, "Synchronization Functions").
#include <cub/block/block_scan.cuh>

#include "scheduler/metadata.h"
#include "scheduler/schedule.h"

namespace flash_mla::detail {
namespace {

constexpr int kThreads = 1024;

__global__ void __launch_bounds__(kThreads)
    metadata_kernel(const int32_t* cache_seqlens, int batch, int rows_per_kv_head, int num_parts,
                    int32_t* metadata, int32_t* num_splits) {
  using BlockScan = cub::BlockScan<int, kThreads>;
  __shared__ typename BlockScan::TempStorage scan_storage;
  __shared__ int carry;
  __shared__ uint32_t split_any;
  __shared__ int max_blocks;
  const int tid = threadIdx.x;

  // Phase 1: C[b] = sum of costs before b, and the most blocks of any sequence.
  if (tid == 0) {
    carry = 0;
    max_blocks = 0;
    split_any = 0;
  }
  __syncthreads();
  int my_begin = 0, my_end = 0;  // this thread's sequence of a one-chunk batch: C[b], C[b + 1]
  int my_max_blocks = 0;
  const int overhead = sched::fixed_overhead_blocks(rows_per_kv_head);
  for (int base = 0; base < batch; base += kThreads) {
    const int b = base + tid;
    const int cost = b < batch ? sched::sequence_cost(cache_seqlens[b], overhead) : 0;
    my_max_blocks = max(my_max_blocks, cost > 0 ? cost - overhead : 0);
    int before, chunk_total;
    BlockScan(scan_storage).ExclusiveSum(cost, before, chunk_total);
    my_begin = carry + before;
    my_end = my_begin + cost;
    if (b < batch) num_splits[b] = my_begin;
    const int warp_max = __reduce_max_sync(0xffffffffu, my_max_blocks);  // one atomic a warp
    if (tid % 32 == 0 && warp_max > 0) atomicMax(&max_blocks, warp_max);
    __syncthreads();
    if (tid == 0) carry += chunk_total;
    __syncthreads();
  }

  // Phase 1b: the width. carry (the total) and max_blocks are final after the loop's last
  // barrier; split_any is complete after the barrier that also publishes num_splits[batch].
  const int w0 = sched::part_width(carry, num_parts);
  const int slack = sched::split_slack(rows_per_kv_head, w0);
  const bool possible = sched::whole_widths_possible(max_blocks, w0, slack);
  if (possible) {
    uint32_t mine = 0;
    if (batch <= kThreads) {  // from registers, not the prefix just written
      if (tid < batch) mine = sched::split_widths(my_begin, my_end, w0, slack, overhead);
    } else {
      for (int b = tid; b < batch; b += kThreads) {
        mine |= sched::split_widths(num_splits[b], b + 1 < batch ? num_splits[b + 1] : carry,
                                    w0, slack, overhead);
      }
    }
    const uint32_t warp_or = __reduce_or_sync(0xffffffffu, mine);
    if (tid % 32 == 0 && warp_or != 0) atomicOr(&split_any, warp_or);
  } else if (tid == 0) {
    split_any = ~0u;
  }
  if (tid == 0) num_splits[batch] = carry;
  __syncthreads();
  const int width = sched::choose_width(w0, split_any, slack);

  // Phase 2: records (piece indices for now).
  for (int p = tid; p < num_parts; p += kThreads) {
    sched::make_record(num_splits, batch, num_parts, width, overhead, p,
                       metadata + p * sched::kNumFields);
  }
  __syncthreads();

  // Phase 3: slot prefix, overwriting C chunk by chunk. Each thread reads C[b] and C[b + 1]
  // before the barrier; the writes of a chunk land at indices no later chunk reads.
  if (tid == 0) carry = 0;
  __syncthreads();
  for (int base = 0; base < batch; base += kThreads) {
    const int b = base + tid;
    const int slots = b < batch ? sched::slots_of(sched::num_pieces_between(
                                      num_splits[b], num_splits[b + 1], width, overhead))
                                : 0;
    int before, chunk_total;
    BlockScan(scan_storage).ExclusiveSum(slots, before, chunk_total);
    __syncthreads();
    if (b < batch) num_splits[b] = carry + before;
    __syncthreads();
    if (tid == 0) carry += chunk_total;
    __syncthreads();
  }
  if (tid == 0) num_splits[batch] = carry;
  __syncthreads();

  // Phase 4: slots of the first pieces.
  for (int p = tid; p < num_parts; p += kThreads) {
    sched::finish_record(num_splits, batch, metadata + p * sched::kNumFields);
  }
}

}  // namespace

cudaError_t launch_metadata_kernel(const int32_t* cache_seqlens, int batch, int rows_per_kv_head,
                                   int num_parts, int32_t* metadata, int32_t* num_splits,
                                   cudaStream_t stream) {
  metadata_kernel<<<1, kThreads, 0, stream>>>(cache_seqlens, batch, rows_per_kv_head, num_parts,
                                              metadata, num_splits);
  return cudaGetLastError();
}

}  // namespace flash_mla::detail
