// Hopper narrow split-KV decode kernel (v7) for at most 16 query rows per KV head.
//
// The wide kernel (decode_kernel.cuh) puts query rows along the wgmma M, which is 64: with 16
// rows three quarters of its tensor work is padding, and on an H200 that work, not the memory,
// set the pace. This kernel computes the transposed products
//   S^T[64 tokens x N]    = K[64 x 576] · Q^T[576 x N]        (36 x wgmma m64nNk16)
//   O^T[512 x N]         += V^T[512 x 64] · P^T[64 x N]        (8 channel tiles x 4 k-steps)
// with N = 16 query rows, so no tensor work is padding beyond N.
//
// Grid (num_sm_parts, 1, h_kv), 384 threads:
//   consumers    two warpgroups; consumer c takes pages c, c + 2, ... of each segment with its
//                own running maximum, sums and O^T, so one's softmax runs while the other's
//                wgmmas occupy the tensor cores. Per page: S^T, the column (query row) softmax
//                -- each warp holds 16 tokens, so the maximum over the page's 64 tokens goes
//                through shared memory --, P^T to shared memory, O^T += V^T P^T. A sequence's
//                partial last page is loaded ending at its last token, the rows before it
//                zero-filled by the copy engine, so NaN past the end never reaches P·V. At a
//                segment's end the consumers swap halves of their states through the (then
//                unused) Q tile: each merges and writes half of the output.
//   producer     one thread TMA-loads each page as 9 boxes of 64 channels into a ring of 8 KiB
//                slots, each slot with a `full` and an `empty` mbarrier. A slot is free again
//                once its reader is done: the RoPE box after Q·Kᵀ, the value boxes after P·V.
//                The ring holds 25 boxes.
// Segments, workspace slots and the epilogue's meaning follow the other kernels (same combine).
#pragma once

#include <cuda.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>

#include "kernels/common/segments.h"
#include "kernels/params.h"
#include "kernels/sm90/config.h"
#include "kernels/sm90/narrow_epilogue.cuh"
#include "kernels/sm90/narrow_math.cuh"
#include "kernels/sm90/narrow_producer.cuh"
#include "kernels/sm90/narrow_smem.cuh"
#include "kernels/sm90/ptx_sm90.h"
#include "kernels/sm90/q_tile.cuh"

namespace flash_mla::sm90 {

// ---------------------------------------------------------------------------------------------
// Consumer warpgroup (the producer: narrow_producer.cuh)
// ---------------------------------------------------------------------------------------------
// One page for consumer `consumer`: S^T, softmax, O^T += V^T P^T, then the page's slots freed.
template <class Element, int kRows>
__device__ __forceinline__ void narrow_page(const DecodeParams& p, const NarrowSmem<kRows>& s,
                                            const Segment& seg, int tile, uint32_t box0,
                                            int consumer, int t, NarrowState<kRows>& st) {
  using C = NarrowConfig<kRows>;
  constexpr int kCols = C::kColsPerThread;
  const char* sP = s.p + consumer * C::kPBytes;

  // S^T = K Q^T, box by box as the boxes land, as two accumulator chains (even and odd
  // k-steps): a wgmma that depends on the previous one's accumulator waits ~100 cycles for it,
  // against 8 of tensor work at N = 16 (docs/perf-notes.md, v8).
  float sc[C::kSAccum], sc_odd[C::kSAccum];
#pragma unroll
  for (int c = 0; c < C::kSubTiles; ++c) {
    const RingPos<C::kSlots> box(box0 + c);
    // The slot's previous fill may be the other consumer's, and may not have landed yet if
    // this consumer runs a page ahead: its `full` would then still be in the phase before,
    // whose parity is the one waited for here, and the wait would pass early. The previous
    // fill's release (its `empty` phase) comes after its landing, so wait for that first.
    if (box0 + c >= uint32_t(C::kSlots)) ptx::mbarrier_wait(&s.empty[box.slot], box.phase ^ 1u);
    // The waits are loops: the explicit fence after them keeps ptxas from inserting its own
    // on that path and serialising the wgmmas (C7520).
    ptx::mbarrier_wait(&s.full[box.slot], box.phase);
    ptx::wgmma_fence();
#pragma unroll
    for (int kk = 0; kk < C::kQkStepsPerBox; ++kk) {
      const int k_bytes = kk * C::kMmaK * C::kElemBytes;
      const uint64_t da = ptx::smem_descriptor(s.slot(box.slot) + k_bytes, 16,
                                               C::kSwizzleAtomBytes, ptx::Swizzle::k128B);
      const uint64_t db = ptx::smem_descriptor(s.q + c * C::kQSubTileBytes + k_bytes, 16,
                                               C::kSwizzleAtomBytes, ptx::Swizzle::k128B);
      const uint32_t accumulate = c > 0 || kk >= 2 ? 1u : 0u;  // not a chain's first step
      wgmma_scores<Element, kRows>(kk % 2 == 0 ? sc : sc_odd, da, db, accumulate);
    }
  }
  ptx::wgmma_commit();
  ptx::wgmma_wait<0>();
#pragma unroll
  for (int k = 0; k < C::kSAccum; ++k) sc[k] += sc_odd[k];  // a fixed order: run-to-run identical
  // The RoPE box has no other reader.
  ptx::mbarrier_arrive(&s.empty[RingPos<C::kSlots>(box0 + C::kSubTiles - 1).slot]);

  float rescale[kCols];
  // A sequence's partial last page holds no token past its end (page_origin): nothing to zero
  // before P·V.
  narrow_softmax<Element, kRows>(p, s, tile, page_origin(seg, tile), consumer, t, sc, st,
                                 rescale);
  ptx::fence_proxy_async_shared();              // P^T: read by the wgmma
  sync_consumer(consumer);  // (B) P^T complete; every warp read col_max

  // O^T = O^T * rescale + V^T P^T; the multiplies only where a query row of the warp moved its
  // reference (most pages move none).
  bool moved = false;
#pragma unroll
  for (int j = 0; j < kCols; ++j) moved |= rescale[j] != 1.f;
  if (__any_sync(0xffffffffu, moved)) {
#pragma unroll
    for (int jt = 0; jt < C::kOTiles; ++jt) {
#pragma unroll
      for (int k = 0; k < C::kSAccum; ++k) {
        st.o[jt][k] *= rescale[(k / 4) * 2 + (k % 2)];
        // Pins the product before the fence below: a multiply the compiler sinks past it makes
        // ptxas fence each wgmma on its own (C7519).
        asm volatile("" : "+f"(st.o[jt][k]));
      }
    }
  }
  ptx::wgmma_fence();
#pragma unroll
  for (int k = 0; k < C::kPvSteps; ++k) {
    const uint64_t db = ptx::smem_descriptor(sP + k * C::kMmaK * C::kElemBytes, 16,
                                             C::kSwizzleAtomBytes, ptx::Swizzle::k128B);
#pragma unroll
    for (int jt = 0; jt < C::kOTiles; ++jt) {
      // V^T: MN-major (channels contiguous), 8-token groups 1 KiB apart.
      const uint64_t da = ptx::smem_descriptor(
          s.slot(RingPos<C::kSlots>(box0 + jt).slot) + k * C::kMmaK * C::kRowBytes,
          C::kBoxBytes, C::kSwizzleAtomBytes, ptx::Swizzle::k128B);
      wgmma_values<Element, kRows>(st.o[jt], da, db);
    }
  }
  ptx::wgmma_commit();
  ptx::wgmma_wait<0>();
#pragma unroll
  for (int c = 0; c < C::kValueBoxes; ++c) {
    ptx::mbarrier_arrive(&s.empty[RingPos<C::kSlots>(box0 + c).slot]);
  }
}

template <class Element, int kRows>
__device__ __forceinline__ void narrow_consume(const DecodeParams& p, const NarrowSmem<kRows>& s,
                                               int part, int g, int consumer, int t) {
  using C = NarrowConfig<kRows>;
  constexpr int kBothThreads = C::kConsumers * C::kWarpgroupThreads;
  uint32_t box = 0;  // the segment's first box in the CTA's walk
  NarrowHandoff handoff{consumer == 0 ? s.to0 : s.to1, consumer == 0 ? s.to1 : s.to0};

  for_each_segment(p, part, [&](const Segment& seg) {
    // Both consumers are past the previous segment's merge, which followed their last wgmma
    // on Q and their last reads of the merge buffer.
    load_q_rows<Element, kRows>(p, s.q, seg.batch, g, 0, consumer * C::kWarpgroupThreads + t,
                                kBothThreads);
    if (consumer == 0 && t < kRows) {
      s.col_limit[t] = key_limit(p, seg, query_position(p, t));
    }
    ptx::fence_proxy_async_shared();  // Q: thread writes read by the wgmma
    sync_consumer(consumer);          // this consumer's part of Q written
    handoff.exchange(consumer);       // the other's too

    NarrowState<kRows> st;
    st.reset();

    int page = consumer;
    for (int tile = seg.token_begin + consumer * C::kBlockN; tile < seg.token_end;
         tile += C::kConsumers * C::kBlockN, page += C::kConsumers) {
      narrow_page<Element, kRows>(p, s, seg, tile, box + page * C::kSubTiles, consumer, t, st);
    }
    box += ((seg.token_end - seg.token_begin + C::kBlockN - 1) / C::kBlockN) * C::kSubTiles;

    // Template arguments, so that each consumer's half of O^T is indexed by constants.
    if (consumer == 0) {
      narrow_merge<kRows, 0>(s, t, handoff, st);
      narrow_epilogue<Element, kRows, 0>(p, s, seg, g, t, st);
    } else {
      narrow_merge<kRows, 1>(s, t, handoff, st);
      narrow_epilogue<Element, kRows, 1>(p, s, seg, g, t, st);
    }
  });
}

template <class Element, int kRows>
__global__ void __launch_bounds__(NarrowConfig<kRows>::kThreads, 1)
    hopper_narrow_kernel(const __grid_constant__ DecodeParams p,
                         const __grid_constant__ CUtensorMap tmap_kv) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)  // wgmma and TMA exist on sm_90a only
  using C = NarrowConfig<kRows>;
  extern __shared__ char smem_raw[];
  const NarrowSmem<kRows> s(smem_raw);
  const int part = blockIdx.x;
  const int g = blockIdx.z;
  if (threadIdx.x == 0) {
    for (int i = 0; i < C::kSlots; ++i) {
      ptx::mbarrier_init(&s.full[i], 1);
      ptx::mbarrier_init(&s.empty[i], C::kWarpgroupThreads);
    }
    ptx::mbarrier_init(s.to0, C::kWarpgroupThreads);
    ptx::mbarrier_init(s.to1, C::kWarpgroupThreads);
    ptx::fence_mbarrier_init();
    ptx::prefetch_tensor_map(&tmap_kv);
  }
  __syncthreads();
  // A programmatic dependent launch: no global read before this (docs/design.md, "A decode call").
  ptx::griddep_wait();
  allow_combine_if_nothing_split(p, part);
  const int warpgroup = threadIdx.x / C::kWarpgroupThreads;
  if (warpgroup == C::kConsumers) {
    ptx::setmaxnreg_dec<C::kProducerRegs>();
    if (threadIdx.x == C::kConsumers * C::kWarpgroupThreads) {
      narrow_produce<kRows>(p, &tmap_kv, s, part, g);
    }
  } else {
    ptx::setmaxnreg_inc<C::kConsumerRegs>();
    narrow_consume<Element, kRows>(p, s, part, g, warpgroup, threadIdx.x % C::kWarpgroupThreads);
  }
#endif
}

}  // namespace flash_mla::sm90
