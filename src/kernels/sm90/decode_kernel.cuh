// Hopper warp-specialised split-KV decode kernel (v1): TMA loads into 128B-swizzled shared
// memory, wgmma for Q·Kᵀ and P·V, mbarrier pipelines, setmaxnreg.
//
// Grid (num_sm_parts, m_blocks, h_kv), one CTA per SM, three warpgroups:
//   producer   warp 0 walks the CTA's (sequence, page) list and TMA-loads each 64-token page
//              (9 boxes of 64 channels) into one of two stages; for a sequence's partial last
//              page it also zeroes the tokens past the end, so NaN there cannot reach P·V;
//   consumer 0 / consumer 1  both compute the full S = Q·Kᵀ (64 x 64) and the same online
//              softmax, then O[:, 0:256) resp. O[:, 256:512) += P·V with P from registers.
// Computing S twice costs tensor time the memory-bound shapes (<= 64 rows) have to spare and
// needs no exchange between the consumers; design.md says what v2 changes for 128+ rows.
// Segments, workspace slots and the epilogue follow the portable kernel (same combine kernel).
#pragma once

#include <cuda.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cmath>
#include <cstdint>

#include "kernels/params.h"
#include "kernels/sm90/config.h"
#include "kernels/sm90/ptx_sm90.h"
#include "scheduler/schedule.h"

namespace flash_mla::sm90 {

using Cfg = HopperConfig;

enum class Role : int { kProducer = 0, kConsumer0 = 1, kConsumer1 = 2 };
// Named barrier ids (0 is __syncthreads).
enum class NamedBarrier : int { kConsumers = 1 };

struct Smem {
  char* q;          // [9 sub-tiles][64 rows][128 B], swizzled: the query tile
  char* kv;         // [kStages][9 sub-tiles][kBlockN tokens][128 B], swizzled: K and V
  uint64_t* full;   // [kStages] TMA bytes landed
  uint64_t* ready;  // [kStages] partial page zeroed by the producer (used instead of full)
  uint64_t* empty;  // [kStages] both consumers done with the stage (8 warp arrivals)

  __device__ explicit Smem(char* raw) {
    const uintptr_t base = (reinterpret_cast<uintptr_t>(raw) + Cfg::kSwizzleAtomBytes - 1) &
                           ~uintptr_t(Cfg::kSwizzleAtomBytes - 1);
    q = reinterpret_cast<char*>(base);
    kv = q + Cfg::kQBytes;
    full = reinterpret_cast<uint64_t*>(kv + Cfg::kKVBytes);
    ready = full + Cfg::kStages;
    empty = ready + Cfg::kStages;
  }
  __device__ char* stage(int s) const { return kv + s * Cfg::kTileBytes; }
};

// One contiguous, page-aligned range of KV tokens of one sequence.
struct Segment {
  int batch;
  int seqlen;
  int token_begin;  // multiple of 64
  int token_end;    // <= seqlen
  int slot;         // workspace slot of a split piece, -1 when written directly
};

// The segments of this CTA's scheduling record, in order (the same walk in every role).
template <class Fn>
__device__ __forceinline__ void for_each_segment(const DecodeParams& p, int part, Fn&& fn) {
  const int32_t* rec = p.metadata + static_cast<int64_t>(part) * sched::kNumFields;
  if (rec[static_cast<int>(sched::Field::kIdle)] != 0) return;
  const int begin_batch = rec[static_cast<int>(sched::Field::kBeginBatch)];
  const int begin_block = rec[static_cast<int>(sched::Field::kBeginBlock)];
  const int end_batch = rec[static_cast<int>(sched::Field::kEndBatch)];
  const int end_block = rec[static_cast<int>(sched::Field::kEndBlock)];
  const int first_slot = rec[static_cast<int>(sched::Field::kFirstSlot)];
  for (int b = begin_batch; b <= end_batch && b < p.batch; ++b) {
    const int seqlen = max(p.cache_seqlens[b], 0);
    const int num_blocks = sched::num_page_blocks(seqlen);
    const int j0 = b == begin_batch ? begin_block : 0;
    const int j1 = min(b == end_batch ? end_block : num_blocks, num_blocks);
    if (j0 >= j1) continue;
    const bool split = p.num_splits[b + 1] > p.num_splits[b];
    const int slot = !split ? -1
                     : (b == begin_batch && first_slot >= 0) ? first_slot
                                                             : p.num_splits[b];
    if (slot >= p.num_slots) continue;  // inconsistent metadata: never write out of bounds
    fn(Segment{b, seqlen, j0 * Cfg::kPageBlock, min(j1 * Cfg::kPageBlock, seqlen), slot});
  }
}

// ---------------------------------------------------------------------------------------------
// Producer
// ---------------------------------------------------------------------------------------------
__device__ __forceinline__ void zero_page_tail(char* stage, int valid, int lane) {
  // Whole 128-byte rows: the swizzle permutes chunks within a row only.
  const int chunks = (Cfg::kBlockN - valid) * Cfg::kSubTiles * (Cfg::kRowBytes / 16);
  for (int c = lane; c < chunks; c += 32) {
    const int row = valid + c / (Cfg::kSubTiles * 8);
    const int rem = c % (Cfg::kSubTiles * 8);
    *reinterpret_cast<uint4*>(stage + (rem / 8) * Cfg::kSubTileBytes + row * Cfg::kRowBytes +
                              (rem % 8) * 16) = make_uint4(0, 0, 0, 0);
  }
}

__device__ __forceinline__ void produce(const DecodeParams& p, const CUtensorMap* tmap,
                                        const Smem& s, int part, int g, int lane) {
  const uint64_t policy = ptx::evict_first_policy();
  int it = 0;
  for_each_segment(p, part, [&](const Segment& seg) {
    for (int tile = seg.token_begin; tile < seg.token_end; tile += Cfg::kBlockN, ++it) {
      const int stage = it % Cfg::kStages;
      const uint32_t use = it / Cfg::kStages;
      if (use > 0) ptx::mbarrier_wait(&s.empty[stage], (use - 1) & 1);
      if (lane == 0) {
        const int page = p.block_table[seg.batch * p.block_table_batch_stride +
                                       tile / Cfg::kPageBlock];
        ptx::mbarrier_arrive_expect_tx(&s.full[stage], Cfg::kTileBytes);
#pragma unroll
        for (int c = 0; c < Cfg::kSubTiles; ++c) {
          ptx::tma_load_4d(s.stage(stage) + c * Cfg::kSubTileBytes, tmap, &s.full[stage],
                           c * Cfg::kSubTileCols, tile % Cfg::kPageBlock, g, page, policy);
        }
      }
      const int valid = seg.token_end - tile;
      if (valid < Cfg::kBlockN) {
        ptx::mbarrier_wait(&s.full[stage], use & 1);
        zero_page_tail(s.stage(stage), valid, lane);
        ptx::fence_proxy_async_shared();
        __syncwarp();
        if (lane == 0) ptx::mbarrier_arrive(&s.ready[stage]);
      }
    }
  });
}

// ---------------------------------------------------------------------------------------------
// Consumers
// ---------------------------------------------------------------------------------------------
// Q rows [m_block * 64, +64) of KV head g into the swizzled tile; rows past M are zeros.
template <class Element>
__device__ __forceinline__ void load_q_tile(const DecodeParams& p, char* sQ, int batch, int g,
                                            int m_block, int ctid) {
  const Element* gQ = static_cast<const Element*>(p.q);
  constexpr int kChunksPerRow = Cfg::kHeadDim * Cfg::kElemBytes / 16;  // 72
  for (int c = ctid; c < Cfg::kBlockM * kChunksPerRow; c += Cfg::kConsumers * 128) {
    const int r = c / kChunksPerRow;
    const int cc = c % kChunksPerRow;
    const int row = m_block * Cfg::kBlockM + r;
    uint4 v = make_uint4(0, 0, 0, 0);
    if (row < p.rows_per_kv) {
      const int i = row / p.heads_per_kv;
      const int h = g * p.heads_per_kv + row % p.heads_per_kv;
      v = __ldg(reinterpret_cast<const uint4*>(gQ + batch * p.q_batch_stride +
                                               i * p.q_seq_stride + h * p.q_head_stride) + cc);
    }
    const int sub = cc / 8, chunk = cc % 8;
    *reinterpret_cast<uint4*>(sQ + sub * Cfg::kQSubTileBytes + r * Cfg::kRowBytes +
                              ((chunk ^ (r % 8)) * 16)) = v;
  }
}

// S[64 x kBlockN] = Q·Kᵀ over 576 channels: 36 wgmma steps, both operands K-major in shared
// memory.
template <class Element>
__device__ __forceinline__ void compute_scores(const char* sQ, const char* sKV,
                                               float (&s)[Cfg::kSAccum]) {
  ptx::wgmma_fence();
#pragma unroll
  for (int k = 0; k < Cfg::kQkSteps; ++k) {
    const int sub = k / Cfg::kQkStepsPerSubTile;
    const int k_bytes = (k % Cfg::kQkStepsPerSubTile) * Cfg::kMmaK * Cfg::kElemBytes;
    // K-major, 128B swizzle: LBO unused (16), SBO = one 8-row swizzle atom.
    const uint64_t da = ptx::smem_descriptor(sQ + sub * Cfg::kQSubTileBytes + k_bytes, 16,
                                             Cfg::kSwizzleAtomBytes, ptx::Swizzle::k128B);
    const uint64_t db = ptx::smem_descriptor(sKV + sub * Cfg::kSubTileBytes + k_bytes, 16,
                                             Cfg::kSwizzleAtomBytes, ptx::Swizzle::k128B);
    if constexpr (Cfg::kBlockN == 32) {
      ptx::wgmma_ss_m64n32k16(s, da, db, k > 0 ? 1u : 0u, Element{});
    } else {
      ptx::wgmma_ss_m64n64k16(s, da, db, k > 0 ? 1u : 0u, Element{});
    }
  }
  ptx::wgmma_commit();
  ptx::wgmma_wait<0>();
}

// O[64 x 256] += P·V over kBlockN tokens: one wgmma step per 16 tokens, P in registers, V
// MN-major (transposed).
template <class Element>
__device__ __forceinline__ void accumulate_pv(const char* sV, const uint32_t (&pa)[Cfg::kPvSteps][4],
                                              float (&o)[Cfg::kOAccum]) {
  ptx::wgmma_fence();
#pragma unroll
  for (int k = 0; k < Cfg::kPvSteps; ++k) {
    // MN-major, 128B swizzle: LBO = next 64-channel sub-tile, SBO = next 8 tokens.
    const uint64_t db = ptx::smem_descriptor(sV + k * Cfg::kMmaK * Cfg::kRowBytes,
                                             Cfg::kSubTileBytes, Cfg::kSwizzleAtomBytes,
                                             ptx::Swizzle::k128B);
    ptx::wgmma_rs_m64n256k16(o, pa[k], db, 1u, Element{});
  }
  ptx::wgmma_commit();
  ptx::wgmma_wait<0>();
}

struct RowState {
  float m[2];  // running max (base-2 domain) of rows r0 and r0 + 8
  float l[2];  // running sum of this thread's columns
};

// Masks, scales to the base-2 domain, updates the running max/sum and turns s into P.
// Accumulator layout (wgmma m64nN): s[nt*4 + 2*half + e] is row r0 + 8*half, column
// nt*8 + 2*(lane%4) + e.
__device__ __forceinline__ void online_softmax(const DecodeParams& p, const Segment& seg,
                                               int tile_begin, int row0, int lane,
                                               float (&s)[Cfg::kSAccum], RowState& st,
                                               float (&rescale)[2]) {
#pragma unroll
  for (int half = 0; half < 2; ++half) {
    const int row = row0 + 8 * half;
    const int i = row / p.heads_per_kv;
    const int limit = p.causal ? min(seg.seqlen, seg.seqlen - p.seqlen_q + i + 1) : seg.seqlen;
    float mx = -INFINITY;
#pragma unroll
    for (int nt = 0; nt < Cfg::kBlockN / 8; ++nt) {
#pragma unroll
      for (int e = 0; e < 2; ++e) {
        const int idx = nt * 4 + 2 * half + e;
        const int token = tile_begin + nt * 8 + 2 * (lane % 4) + e;
        s[idx] = token < limit ? s[idx] * p.scale_log2 : -INFINITY;
        mx = fmaxf(mx, s[idx]);
      }
    }
    mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
    mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
    const float m_new = fmaxf(st.m[half], mx);
    const float ref = m_new == -INFINITY ? 0.f : m_new;  // no key yet: keep P = 0, not NaN
    rescale[half] = exp2f(st.m[half] - ref);
    float sum = 0.f;
#pragma unroll
    for (int nt = 0; nt < Cfg::kBlockN / 8; ++nt) {
#pragma unroll
      for (int e = 0; e < 2; ++e) {
        const int idx = nt * 4 + 2 * half + e;
        s[idx] = exp2f(s[idx] - ref);
        sum += s[idx];
      }
    }
    st.l[half] = st.l[half] * rescale[half] + sum;
    st.m[half] = m_new;
  }
}

template <class Element>
__device__ __forceinline__ void to_a_fragments(const float (&s)[Cfg::kSAccum],
                                               uint32_t (&pa)[Cfg::kPvSteps][4]) {
  // The A fragment of k-step k holds tokens 16k..16k+15: accumulator n-tiles 2k and 2k+1.
#pragma unroll
  for (int k = 0; k < Cfg::kPvSteps; ++k) {
    pa[k][0] = ptx::pack2<Element>(s[8 * k + 0], s[8 * k + 1]);
    pa[k][1] = ptx::pack2<Element>(s[8 * k + 2], s[8 * k + 3]);
    pa[k][2] = ptx::pack2<Element>(s[8 * k + 4], s[8 * k + 5]);
    pa[k][3] = ptx::pack2<Element>(s[8 * k + 6], s[8 * k + 7]);
  }
}

template <class Element>
__device__ __forceinline__ void write_output(const DecodeParams& p, const Segment& seg, int g,
                                             int m_block, int row0, int consumer, int lane,
                                             const RowState& st, const float (&o)[Cfg::kOAccum]) {
  const bool split = seg.slot >= 0;
#pragma unroll
  for (int half = 0; half < 2; ++half) {
    float l = st.l[half];
    l += __shfl_xor_sync(0xffffffffu, l, 1);
    l += __shfl_xor_sync(0xffffffffu, l, 2);
    const int row = row0 + 8 * half;
    if (row >= p.rows_per_kv) continue;
    const bool empty = l == 0.f;
    const float inv = empty ? 0.f : 1.f / l;
    const float lse = empty ? (split ? -INFINITY : INFINITY)
                            : (st.m[half] + log2f(l)) * 0.69314718055994531f;
    const int col0 = consumer * Cfg::kColsPerConsumer + 2 * (lane % 4);
    const int i = row / p.heads_per_kv;
    const int h = g * p.heads_per_kv + row % p.heads_per_kv;
    if (split) {
      const int64_t accum_row =
          (static_cast<int64_t>(seg.slot) * p.num_heads_kv + g) * p.rows_per_kv + row;
      float* dst = p.o_accum + accum_row * Cfg::kHeadDimV + col0;
#pragma unroll
      for (int nt = 0; nt < Cfg::kColsPerConsumer / 8; ++nt) {
        *reinterpret_cast<float2*>(dst + nt * 8) =
            make_float2(o[nt * 4 + 2 * half] * inv, o[nt * 4 + 2 * half + 1] * inv);
      }
      if (consumer == 0 && lane % 4 == 0) p.lse_accum[accum_row] = lse;
    } else {
      Element* dst = static_cast<Element*>(p.out) + seg.batch * p.out_batch_stride +
                     i * p.out_seq_stride + h * p.out_head_stride + col0;
#pragma unroll
      for (int nt = 0; nt < Cfg::kColsPerConsumer / 8; ++nt) {
        *reinterpret_cast<uint32_t*>(dst + nt * 8) =
            ptx::pack2<Element>(o[nt * 4 + 2 * half] * inv, o[nt * 4 + 2 * half + 1] * inv);
      }
      if (consumer == 0 && lane % 4 == 0) {
        p.lse[seg.batch * p.lse_batch_stride + h * p.lse_head_stride + i * p.lse_seq_stride] = lse;
      }
    }
  }
}

template <class Element>
__device__ __forceinline__ void consume(const DecodeParams& p, const Smem& s, int part, int m_block,
                                        int g, int consumer, int t) {
  const int lane = t % 32;
  const int row0 = m_block * Cfg::kBlockM + (t / 32) * 16 + lane / 4;
  const int ctid = consumer * Cfg::kWarpgroupThreads + t;
  constexpr int kConsumerThreads = Cfg::kConsumers * Cfg::kWarpgroupThreads;
  int it = 0;
  uint32_t ready_parity = 0;  // bit s: parity of the next `ready` phase of stage s
  for_each_segment(p, part, [&](const Segment& seg) {
    // Both consumers are past the previous segment's last wgmma on Q.
    ptx::named_barrier_sync(static_cast<int>(NamedBarrier::kConsumers), kConsumerThreads);
    load_q_tile<Element>(p, s.q, seg.batch, g, m_block, ctid);
    ptx::fence_proxy_async_shared();
    ptx::named_barrier_sync(static_cast<int>(NamedBarrier::kConsumers), kConsumerThreads);

    RowState st = {{-INFINITY, -INFINITY}, {0.f, 0.f}};
    float o[Cfg::kOAccum];
#pragma unroll
    for (int k = 0; k < Cfg::kOAccum; ++k) o[k] = 0.f;
    for (int tile = seg.token_begin; tile < seg.token_end; tile += Cfg::kBlockN, ++it) {
      const int stage = it % Cfg::kStages;
      if (seg.token_end - tile < Cfg::kBlockN) {
        ptx::mbarrier_wait(&s.ready[stage], (ready_parity >> stage) & 1u);
        ready_parity ^= 1u << stage;
      } else {
        ptx::mbarrier_wait(&s.full[stage], (it / Cfg::kStages) & 1);
      }
      const char* sKV = s.stage(stage);
      float sc[Cfg::kSAccum];
#pragma unroll
      for (int k = 0; k < Cfg::kSAccum; ++k) sc[k] = 0.f;
      compute_scores<Element>(s.q, sKV, sc);
      float rescale[2];
      online_softmax(p, seg, tile, row0, lane, sc, st, rescale);
#pragma unroll
      for (int nt = 0; nt < Cfg::kColsPerConsumer / 8; ++nt) {
        o[nt * 4 + 0] *= rescale[0];
        o[nt * 4 + 1] *= rescale[0];
        o[nt * 4 + 2] *= rescale[1];
        o[nt * 4 + 3] *= rescale[1];
      }
      uint32_t pa[Cfg::kPvSteps][4];
      to_a_fragments<Element>(sc, pa);
      accumulate_pv<Element>(sKV + consumer * Cfg::kSubTilesPerConsumerV * Cfg::kSubTileBytes,
                             pa, o);
      __syncwarp();
      if (lane == 0) ptx::mbarrier_arrive(&s.empty[stage]);
    }
    write_output<Element>(p, seg, g, m_block, row0, consumer, lane, st, o);
  });
}

template <class Element>
__global__ void __launch_bounds__(Cfg::kThreads, 1)
    hopper_decode_kernel(const __grid_constant__ DecodeParams p,
                         const __grid_constant__ CUtensorMap tmap_kv) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)  // wgmma, setmaxnreg and TMA exist on sm_90a only
  extern __shared__ char smem_raw[];
  const Smem s(smem_raw);
  const int part = blockIdx.x;
  const int m_block = blockIdx.y;
  const int g = blockIdx.z;
  const Role role = static_cast<Role>(threadIdx.x / Cfg::kWarpgroupThreads);

  if (threadIdx.x == 0) {
    for (int st = 0; st < Cfg::kStages; ++st) {
      ptx::mbarrier_init(&s.full[st], 1);
      ptx::mbarrier_init(&s.ready[st], 1);
      ptx::mbarrier_init(&s.empty[st], Cfg::kConsumers * Cfg::kWarpgroupThreads / 32);
    }
    ptx::fence_mbarrier_init();
    ptx::prefetch_tensor_map(&tmap_kv);
  }
  __syncthreads();

  if (role == Role::kProducer) {
    ptx::setmaxnreg_dec<Cfg::kProducerRegs>();
    if (threadIdx.x / 32 == 0) produce(p, &tmap_kv, s, part, g, threadIdx.x % 32);
  } else {
    ptx::setmaxnreg_inc<Cfg::kConsumerRegs>();
    const int consumer = static_cast<int>(role) - static_cast<int>(Role::kConsumer0);
    consume<Element>(p, s, part, m_block, g, consumer, threadIdx.x % Cfg::kWarpgroupThreads);
  }
#endif
}

}  // namespace flash_mla::sm90
