// The metadata kernel: one CTA evaluates the schedule of schedule.h on the device.
//
// Phase 1  cost prefix C[0..batch] into num_splits (block scans over chunks of kThreads).
// Phase 1b the width: which candidate widths split some sequence (a shared OR over the batch),
//          skipped when the longest sequence rules out every candidate.
// Phase 2  one record per part from C (binary searches, independent per part).
// Phase 3  slot prefix over the pieces of each sequence, in place over C.
// Phase 4  records turn piece indices into slots.
// Where the line schedule would split a sequence and the batch is about a sequence a part, the
// chain schedule (chain.h) replaces phases 2-4: a rank sort, one candidate fill per warp, and the
// winner's slot prefix and records, a thread each.
// __syncthreads between phases makes the global writes of one phase visible to the next
// (CUDA C++ Programming Guide, "Synchronization Functions").
#include <climits>

#include <cub/block/block_scan.cuh>

#include "scheduler/metadata.h"
#include "scheduler/chain.h"
#include "scheduler/schedule.h"

namespace flash_mla::detail {
namespace {

constexpr int kThreads = 1024;
using BlockScan = cub::BlockScan<int, kThreads>;

// The chain schedule's shared memory (dynamic: more than the 48 KiB a static array may take).
struct ChainShared {
  int pages[sched::kChainMaxBatch];              // by sequence
  int sorted_pages[sched::kChainMaxBatch];       // the nonempty ones, ascending
  int sorted_batch[sched::kChainMaxBatch];       // those sequences, then the empty ones
  int32_t num_splits[sched::kChainMaxBatch + 1];  // the winner's slot prefix
  uint16_t count_le[sched::kChainMaxRoom + 1];    // sorted entries with at most r pages
  uint16_t order[sched::kChainCandidates][sched::kChainMaxBatch];
  uint32_t start[sched::kChainCandidates][sched::kChainMaxParts];
  int32_t block[sched::kChainCandidates][sched::kChainMaxParts];
  sched::ChainStats stats[sched::kChainCandidates];
  int pick;
};
constexpr size_t kChainSmemBytes = sizeof(ChainShared);

// The picker of chain_fill for one warp, every lane running the same fill: lane w holds the
// free bits of sorted entries [32 w, 32 w + 32), and count_le turns a room into the number of
// entries that fit. A step is a table read, two maxima over the warp (REDUX: the highest free
// entry that fits, the highest free one) and the pages of the one taken.
struct WarpChainPicker {
  const int* sorted_pages;
  const uint16_t* count_le;
  int max_room;
  int lane;
  uint32_t free_bits;

  __device__ int take(int room, bool* whole, int* pages) {
    const int rel = count_le[min(room, max_room)] - 32 * lane;
    const uint32_t below = rel >= 32 ? ~0u : rel <= 0 ? 0u : (1u << rel) - 1u;
    const uint32_t fits = free_bits & below;
    const int my_fit = fits != 0 ? 32 * lane + 31 - __clz(static_cast<int>(fits)) : -1;
    const int my_any = free_bits != 0 ? 32 * lane + 31 - __clz(static_cast<int>(free_bits)) : -1;
    const int fit = __reduce_max_sync(0xffffffffu, my_fit);
    const int any = __reduce_max_sync(0xffffffffu, my_any);
    *whole = fit >= 0;
    const int k = *whole ? fit : any;
    if (lane == k >> 5) free_bits &= ~(1u << (k & 31));
    *pages = sorted_pages[k];
    return k;
  }
};

// The number of entries of sorted[0, n) that are <= x.
__device__ int count_at_most(const int* sorted, int n, int x) {
  int lo = 0, hi = n;
  while (lo < hi) {
    const int mid = (lo + hi) / 2;
    if (sorted[mid] <= x) lo = mid + 1; else hi = mid;
  }
  return lo;
}

// The chain schedule of chain.h, by every thread of the CTA: a rank sort, one candidate fill per
// warp (each writing its trace), then the winner's slot prefix and records, a thread each.
// Returns whether it was written (false: no fill fits num_parts, the line schedule follows).
__device__ bool chain_schedule(const int32_t* cache_seqlens, int batch, int overhead,
                               int total_cost, int num_parts, int32_t* metadata,
                               int32_t* num_splits, ChainShared& sh,
                               BlockScan::TempStorage& scan_storage) {
  static_assert(sched::kChainMaxBatch <= kThreads && sched::kChainMaxParts <= kThreads);
  static_assert(sched::kChainCandidates <= kThreads / 32 && sched::kChainWords <= 32);
  const int tid = threadIdx.x;
  const int mine = tid < batch ? sched::num_page_blocks(cache_seqlens[tid]) : 0;
  if (tid < batch) sh.pages[tid] = mine;
  const int n = __syncthreads_count(mine > 0);
  // Rank of (pages, batch) among the nonempty sequences; empty ones after them in batch order.
  if (tid < batch) {
    int rank = 0;
    for (int j = 0; j < batch; ++j) {
      const int pj = sh.pages[j];
      if (mine > 0) rank += pj > 0 && (pj < mine || (pj == mine && j < tid));
      else rank += pj == 0 && j < tid;
    }
    if (mine > 0) sh.sorted_pages[rank] = mine;
    else rank += n;
    sh.sorted_batch[rank] = tid;
  }
  __syncthreads();
  const int max_room = sched::chain_max_room(total_cost, num_parts, overhead);
  for (int r = tid; r <= max_room; r += kThreads) {
    sh.count_le[r] = static_cast<uint16_t>(count_at_most(sh.sorted_pages, n, r));
  }
  __syncthreads();

  const int warp = tid / 32, lane = tid % 32;
  if (warp < sched::kChainCandidates) {
    const int first = 32 * lane;
    const int have = min(max(n - first, 0), 32);
    WarpChainPicker picker{sh.sorted_pages, sh.count_le, max_room, lane,
                           have == 32 ? ~0u : (1u << have) - 1u};
    const sched::ChainTrace trace{sh.order[warp], sh.start[warp], sh.block[warp]};
    const int base = sched::chain_base_target(total_cost, num_parts, overhead);
    // Every lane writes the trace: the same values to the same addresses, which leaves one
    // write per address (CUDA C++ Programming Guide, "SIMT Architecture") and spares the fill
    // a divergent branch around each record store (3-17% less metadata time, perf-notes
    // "Every lane writes the fill's trace").
    const sched::ChainStats stats = sched::chain_fill(
        picker, n, overhead, sched::chain_candidate_target(base, warp),
        sched::chain_candidate_tolerance(warp), num_parts, trace);
    if (lane == 0) sh.stats[warp] = stats;
  }
  if (tid <= batch) sh.num_splits[tid] = 0;
  __syncthreads();
  if (tid == 0) sh.pick = sched::chain_pick(sh.stats, num_parts);
  __syncthreads();
  const int pick = sh.pick;
  if (pick < 0) return false;

  const sched::ChainTrace trace{sh.order[pick], sh.start[pick], sh.block[pick]};
  const int parts = sh.stats[pick].parts;
  if (tid < parts) {
    const int slots = sched::chain_slots_closed_by(trace, tid);
    if (slots > 0) {
      const int pos = sched::chain_start_pos(trace.start[tid]);
      sh.num_splits[sched::chain_walk_batch(trace, sh.sorted_batch, n, pos)] = slots;
    }
  }
  __syncthreads();
  int before, total_slots;  // batch < kThreads: one chunk
  BlockScan(scan_storage).ExclusiveSum(tid < batch ? sh.num_splits[tid] : 0, before, total_slots);
  __syncthreads();
  if (tid < batch) sh.num_splits[tid] = before;
  if (tid == 0) sh.num_splits[batch] = total_slots;
  __syncthreads();
  if (tid <= batch) num_splits[tid] = sh.num_splits[tid];
  for (int p = tid; p < num_parts; p += kThreads) {
    sched::chain_record(trace, parts, sh.sorted_batch, n, batch, num_parts, sh.num_splits, p,
                        metadata + p * sched::kNumFields);
  }
  return true;
}

__global__ void __launch_bounds__(kThreads)
    metadata_kernel(const int32_t* cache_seqlens, int batch, int rows_per_kv_head, int num_parts,
                    int32_t* metadata, int32_t* num_splits) {
  __shared__ typename BlockScan::TempStorage scan_storage;
  extern __shared__ __align__(16) unsigned char chain_smem[];
  __shared__ int carry;
  __shared__ uint32_t split_any;
  __shared__ int max_blocks, min_blocks;  // min_blocks: of the nonempty sequences
  const int tid = threadIdx.x;

  // Phase 1: C[b] = sum of costs before b, the most blocks of a sequence and the fewest of a
  // nonempty one.
  if (tid == 0) {
    carry = 0;
    max_blocks = 0;
    min_blocks = INT_MAX;
    split_any = 0;
  }
  __syncthreads();
  int my_begin = 0, my_end = 0;  // this thread's sequence of a one-chunk batch: C[b], C[b + 1]
  int my_max_blocks = 0, my_min_blocks = INT_MAX;
  const int overhead = sched::fixed_overhead_blocks(rows_per_kv_head);
  for (int base = 0; base < batch; base += kThreads) {
    const int b = base + tid;
    const int cost = b < batch ? sched::sequence_cost(cache_seqlens[b], overhead) : 0;
    my_max_blocks = max(my_max_blocks, cost > 0 ? cost - overhead : 0);
    my_min_blocks = min(my_min_blocks, cost > 0 ? cost - overhead : INT_MAX);
    int before, chunk_total;
    BlockScan(scan_storage).ExclusiveSum(cost, before, chunk_total);
    my_begin = carry + before;
    my_end = my_begin + cost;
    if (b < batch) num_splits[b] = my_begin;
    const int warp_max = __reduce_max_sync(0xffffffffu, my_max_blocks);  // one atomic a warp
    const int warp_min = __reduce_min_sync(0xffffffffu, my_min_blocks);
    if (tid % 32 == 0 && warp_max > 0) atomicMax(&max_blocks, warp_max);
    if (tid % 32 == 0 && warp_min < INT_MAX) atomicMin(&min_blocks, warp_min);
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
  const bool line_splits = ((split_any >> (width - w0)) & 1u) != 0;
  if (sched::use_chain(batch, num_parts, rows_per_kv_head, line_splits,
                       min_blocks == max_blocks, carry) &&
      chain_schedule(cache_seqlens, batch, overhead, carry, num_parts, metadata, num_splits,
                     *reinterpret_cast<ChainShared*>(chain_smem), scan_storage)) {
    return;
  }

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
  if (cudaError_t err = cudaFuncSetAttribute(
          metadata_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, kChainSmemBytes);
      err != cudaSuccess) {
    return err;
  }
  metadata_kernel<<<1, kThreads, kChainSmemBytes, stream>>>(
      cache_seqlens, batch, rows_per_kv_head, num_parts, metadata, num_splits);
  return cudaGetLastError();
}

}  // namespace flash_mla::detail
