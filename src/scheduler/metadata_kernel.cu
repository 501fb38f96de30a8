// The metadata kernel: one CTA evaluates the schedule of schedule.h on the device.
//
// Phase 1  cost prefix C[0..batch] into num_splits (block scans over chunks of kThreads).
// Phase 1b the width: which candidate widths split some sequence (a shared OR over the batch).
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
  const int tid = threadIdx.x;

  // Phase 1: C[b] = sum of costs before b.
  if (tid == 0) carry = 0;
  __syncthreads();
  for (int base = 0; base < batch; base += kThreads) {
    const int b = base + tid;
    const int cost = b < batch ? sched::sequence_cost(cache_seqlens[b]) : 0;
    int before, chunk_total;
    BlockScan(scan_storage).ExclusiveSum(cost, before, chunk_total);
    if (b < batch) num_splits[b] = carry + before;
    __syncthreads();
    if (tid == 0) carry += chunk_total;
    __syncthreads();
  }
  if (tid == 0) num_splits[batch] = carry;
  if (tid == 0) split_any = 0;
  __syncthreads();

  // Phase 1b: the width.
  const int w0 = sched::part_width(num_splits[batch], num_parts);
  const int slack = sched::split_slack(rows_per_kv_head);
  uint32_t mine = 0;
  for (int b = tid; b < batch; b += kThreads) {
    mine |= sched::split_widths(num_splits[b], num_splits[b + 1], w0, slack);
  }
  if (mine != 0) atomicOr(&split_any, mine);
  __syncthreads();
  const int width = sched::choose_width(w0, split_any, slack);

  // Phase 2: records (piece indices for now).
  for (int p = tid; p < num_parts; p += kThreads) {
    sched::make_record(num_splits, batch, num_parts, width, p, metadata + p * sched::kNumFields);
  }
  __syncthreads();

  // Phase 3: slot prefix, overwriting C chunk by chunk. Each thread reads C[b] and C[b + 1]
  // before the barrier; the writes of a chunk land at indices no later chunk reads.
  if (tid == 0) carry = 0;
  __syncthreads();
  for (int base = 0; base < batch; base += kThreads) {
    const int b = base + tid;
    const int slots = b < batch ? sched::slots_of(sched::num_pieces_between(
                                      num_splits[b], num_splits[b + 1], width))
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
    sched::finish_record(num_splits, metadata + p * sched::kNumFields);
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
