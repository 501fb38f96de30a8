// The narrow Hopper kernel's shared memory, its ring of KV box slots, and the barriers
// between its warpgroups (narrow_kernel.cuh; budget and barriers in docs/design.md).
#pragma once

#include <cstdint>

#include "kernels/sm90/config.h"
#include "kernels/sm90/ptx_sm90.h"

namespace flash_mla::sm90 {

template <int kRows>
struct NarrowSmem {
  using C = NarrowConfig<kRows>;
  char* q;          // [9 sub-tiles][kRows rows][128 B], swizzled: the query tile
  char* p;          // [2 consumers][kRows rows][64 tokens] P^T of a page, K-major, swizzled
  char* ring;       // [kSlots][64 tokens][128 B], swizzled: KV boxes
  float* col_max;   // [2 consumers][warps][kRows] each warp's column maxima of its page
  float* col_sum;   // [2 consumers][warps][kRows] each warp's column sums (epilogue)
  int* col_limit;   // [kRows] tokens a query row may see in the current segment (causal mask)
  uint64_t* full;   // [kSlots] the box's TMA bytes landed
  uint64_t* empty;  // [kSlots] the box's consumer is done with it (128 arrivals)
  // Hand-offs between the consumers (128 arrivals: every thread of the signalling consumer,
  // after its own writes), strictly alternating: 1 -> 0 on to0, then 0 -> 1 on to1.
  uint64_t* to0;
  uint64_t* to1;

  // Aligned by an offset from the __shared__ array (LDS/STS, not generic accesses).
  __device__ explicit NarrowSmem(char* raw) {
    const uint32_t misalign = ptx::smem_addr(raw) & (C::kSwizzleAtomBytes - 1);
    q = raw + ((C::kSwizzleAtomBytes - misalign) & (C::kSwizzleAtomBytes - 1));
    p = q + C::kQBytes;
    ring = p + C::kConsumers * C::kPBytes;
    col_max = reinterpret_cast<float*>(ring + size_t(C::kSlots) * C::kBoxBytes);
    col_sum = col_max + C::kConsumers * C::kWarps * kRows;
    col_limit = reinterpret_cast<int*>(col_sum + C::kConsumers * C::kWarps * kRows);
    // col_limit's reservation is 2 kRows ints of which kRows are used (kStatBytes): a spare
    // 64 bytes, kept because removing it moves the barriers (not re-measured yet).
    full = reinterpret_cast<uint64_t*>(col_limit + 2 * kRows);
    empty = full + C::kSlots;
    to0 = empty + C::kSlots;
    to1 = to0 + 1;
  }
  __device__ char* slot(int i) const { return ring + i * C::kBoxBytes; }
};

// Box `n` of the CTA's walk (9 per page, in page order) sits in slot n % kSlots, in that slot's
// use n / kSlots: the parity its barriers wait for. The consumers take alternate pages, so a
// slot's consecutive fills may go to different consumers (see narrow_page's waits).
template <int kSlots>
struct RingPos {
  int slot;
  uint32_t phase;
  __device__ explicit RingPos(uint32_t box) : slot(box % kSlots), phase((box / kSlots) & 1u) {}
};

// Named barriers (0 is __syncthreads), one per consumer warpgroup. Between the consumers the
// hand-offs are mbarriers (NarrowHandoff): with a 256-thread named barrier instead, racecheck
// reported the merge's exchanges as races.
enum class NarrowBarrier : int {
  kConsumer0 = 1,  // consumer 0's 128 threads
  kConsumer1 = 2,  // consumer 1's 128 threads
};

template <NarrowBarrier kId>
__device__ __forceinline__ void sync_warpgroup() {
  ptx::named_barrier_sync<static_cast<int>(kId), 128>();
}
__device__ __forceinline__ void sync_consumer(int consumer) {
  // Immediate ids (not 1 + consumer in a register), so ptxas knows each bar.sync's barrier.
  if (consumer == 0) {
    sync_warpgroup<NarrowBarrier::kConsumer0>();
  } else {
    sync_warpgroup<NarrowBarrier::kConsumer1>();
  }
}

// One consumer's side of the strictly alternating hand-offs: consumer 1 signals first, each
// signal after waiting for the other's previous one, so no barrier is ever two phases ahead.
struct NarrowHandoff {
  uint64_t* in;   // the other consumer signals here
  uint64_t* out;  // this consumer signals here
  uint32_t parity = 0;
  __device__ void signal() const { ptx::mbarrier_arrive(out); }
  __device__ void await() {
    ptx::mbarrier_wait(in, parity);
    parity ^= 1u;
  }
  // Both consumers past this point, with each other's writes visible (consumer 1 first).
  __device__ void exchange(int consumer) {
    if (consumer == 1) {
      signal();
      await();
    } else {
      await();
      signal();
    }
  }
};

}  // namespace flash_mla::sm90
