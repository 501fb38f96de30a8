// Hopper warp-specialised split-KV decode kernel (v1): TMA loads into 128B-swizzled shared
// memory, wgmma for Q·Kᵀ and P·V, mbarrier pipelines, setmaxnreg.
//
// Grid (num_sm_parts, m_blocks, h_kv), one CTA per SM, three warpgroups:
//   producer   warp 0 walks the CTA's (sequence, page) list and TMA-loads each 64-token page
//              (9 boxes of 64 channels) into one of two stages; for a sequence's partial last
//              page it also zeroes the tokens past the end, so NaN there cannot reach P·V;
//   consumer c (0, 1) computes S for tokens [32c, +32) of the page (Q·Kᵀ, 64 x 32), the
//              consumers exchange their row maxima, each writes its half of P (bf16) to shared
//              memory, and then O[:, 256c, +256) += P·V over all 64 tokens (v4: S once per
//              page; v1 computed all of S in both consumers).
// Segments, workspace slots and the epilogue follow the portable kernel (same combine kernel).
#pragma once

#include <cuda.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cmath>
#include <cstdint>

#include "kernels/common/segments.h"
#include "kernels/params.h"
#include "kernels/sm90/config.h"
#include "kernels/sm90/ptx_sm90.h"

namespace flash_mla::sm90 {

using Cfg = HopperConfig;

enum class Role : int { kProducer = 0, kConsumer0 = 1, kConsumer1 = 2 };
// Named barrier ids (0 is __syncthreads).
enum class NamedBarrier : int {
  kConsumers = 1,     // Q tile rewritten at a segment start
  kRowMax = 2,        // both halves' row maxima of this page written
  kPReady = 3,        // both halves of P written
  kRowSums = 4,       // both halves' row sums written (epilogue)
};

struct Smem {
  char* q;          // [9 sub-tiles][64 rows][128 B], swizzled: the query tile
  char* kv;         // [kStages][9 sub-tiles][kBlockN tokens][128 B], swizzled: K and V
  char* p;          // [64 rows][128 B], swizzled: P of the current page (bf16/fp16)
  float* row_max;   // [2 consumers][64 rows] the page's row maxima of each half
  float* row_sum;   // [2 consumers][64 rows] each half's row sums (epilogue)
  uint64_t* full;   // [kStages] TMA bytes landed
  uint64_t* ready;  // [kStages] partial page zeroed by the producer (used instead of full)
  uint64_t* empty;  // [kStages] both consumers done with the stage (8 warp arrivals)

  __device__ explicit Smem(char* raw) {
    const uintptr_t base = (reinterpret_cast<uintptr_t>(raw) + Cfg::kSwizzleAtomBytes - 1) &
                           ~uintptr_t(Cfg::kSwizzleAtomBytes - 1);
    q = reinterpret_cast<char*>(base);
    kv = q + Cfg::kQBytes;
    p = kv + Cfg::kKVBytes;
    row_max = reinterpret_cast<float*>(p + Cfg::kPBytes);
    row_sum = row_max + Cfg::kConsumers * Cfg::kBlockM;
    full = reinterpret_cast<uint64_t*>(row_sum + Cfg::kConsumers * Cfg::kBlockM);
    ready = full + Cfg::kStages;
    empty = ready + Cfg::kStages;
  }
  __device__ char* stage(int s) const { return kv + s * Cfg::kTileBytes; }
};

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
__device__ __forceinline__ void compute_scores(const char* sQ, const char* sKV, int consumer,
                                               float (&s)[Cfg::kSAccum]) {
  const int token_bytes = consumer * Cfg::kSTokens * Cfg::kRowBytes;  // whole swizzle atoms
  ptx::wgmma_fence();
#pragma unroll
  for (int k = 0; k < Cfg::kQkSteps; ++k) {
    const int sub = k / Cfg::kQkStepsPerSubTile;
    const int k_bytes = (k % Cfg::kQkStepsPerSubTile) * Cfg::kMmaK * Cfg::kElemBytes;
    // K-major, 128B swizzle: LBO unused (16), SBO = one 8-row swizzle atom.
    const uint64_t da = ptx::smem_descriptor(sQ + sub * Cfg::kQSubTileBytes + k_bytes, 16,
                                             Cfg::kSwizzleAtomBytes, ptx::Swizzle::k128B);
    const uint64_t db = ptx::smem_descriptor(sKV + sub * Cfg::kSubTileBytes + token_bytes + k_bytes,
                                             16, Cfg::kSwizzleAtomBytes, ptx::Swizzle::k128B);
    ptx::wgmma_ss_m64n32k16(s, da, db, k > 0 ? 1u : 0u, Element{});
  }
  ptx::wgmma_commit();
  ptx::wgmma_wait<0>();
}

// O[64 x 256] += P·V over kBlockN tokens: one wgmma step per 16 tokens, P (K-major) and V
// (MN-major, transposed) both from shared memory.
template <class Element>
__device__ __forceinline__ void accumulate_pv(const char* sP, const char* sV,
                                              float (&o)[Cfg::kOAccum]) {
  ptx::wgmma_fence();
#pragma unroll
  for (int k = 0; k < Cfg::kPvSteps; ++k) {
    // P: K-major like Q. V: MN-major, 128B swizzle, LBO = next 64-channel sub-tile,
    // SBO = next 8 tokens.
    const uint64_t da = ptx::smem_descriptor(sP + k * Cfg::kMmaK * Cfg::kElemBytes, 16,
                                             Cfg::kSwizzleAtomBytes, ptx::Swizzle::k128B);
    const uint64_t db = ptx::smem_descriptor(sV + k * Cfg::kMmaK * Cfg::kRowBytes,
                                             Cfg::kSubTileBytes, Cfg::kSwizzleAtomBytes,
                                             ptx::Swizzle::k128B);
    ptx::wgmma_ss_m64n256k16(o, da, db, 1u, Element{});
  }
  ptx::wgmma_commit();
  ptx::wgmma_wait<0>();
}

struct RowState {
  float m[2];  // running max (base-2 domain) of rows r0 and r0 + 8, over the whole page
  float l[2];  // running sum over this thread's columns of this consumer's half
};

// Where a thread's accumulator entries sit (wgmma m64nN): s[nt*4 + 2*half + e] is row
// r_local + 8*half of the tile, column nt*8 + 2*(lane%4) + e of this consumer's 32 tokens.
struct Coord {
  int lane, r_local, consumer;
};

// Masks this half of the page, scales to the base-2 domain and publishes its row maxima.
__device__ __forceinline__ void mask_and_publish_max(const DecodeParams& p, const Segment& seg,
                                                     int tile_begin, int m_block, const Coord& c,
                                                     const Smem& sm, float (&s)[Cfg::kSAccum]) {
#pragma unroll
  for (int half = 0; half < 2; ++half) {
    const int r = c.r_local + 8 * half;
    const int i = (m_block * Cfg::kBlockM + r) / p.heads_per_kv;
    const int limit = p.causal ? min(seg.seqlen, seg.seqlen - p.seqlen_q + i + 1) : seg.seqlen;
    float mx = -INFINITY;
#pragma unroll
    for (int nt = 0; nt < Cfg::kSTokens / 8; ++nt) {
#pragma unroll
      for (int e = 0; e < 2; ++e) {
        const int idx = nt * 4 + 2 * half + e;
        const int token = tile_begin + c.consumer * Cfg::kSTokens + nt * 8 + 2 * (c.lane % 4) + e;
        s[idx] = token < limit ? s[idx] * p.scale_log2 : -INFINITY;
        mx = fmaxf(mx, s[idx]);
      }
    }
    mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
    mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
    if (c.lane % 4 == 0) sm.row_max[c.consumer * Cfg::kBlockM + r] = mx;
  }
}

// After the row-max exchange: the page maximum (the same in both consumers), the rescale of
// the running state, P = exp2(s - m) written as 16-bit into this consumer's half of sP.
template <class Element>
__device__ __forceinline__ void softmax_to_shared(const Coord& c, const Smem& sm,
                                                  float (&s)[Cfg::kSAccum], RowState& st,
                                                  float (&rescale)[2]) {
#pragma unroll
  for (int half = 0; half < 2; ++half) {
    const int r = c.r_local + 8 * half;
    const float mx = fmaxf(sm.row_max[r], sm.row_max[Cfg::kBlockM + r]);
    const float m_new = fmaxf(st.m[half], mx);
    const float ref = m_new == -INFINITY ? 0.f : m_new;  // no key yet: keep P = 0, not NaN
    rescale[half] = exp2f(st.m[half] - ref);
    float sum = 0.f;
#pragma unroll
    for (int nt = 0; nt < Cfg::kSTokens / 8; ++nt) {
      const int idx = nt * 4 + 2 * half;
      const float p0 = exp2f(s[idx] - ref);
      const float p1 = exp2f(s[idx + 1] - ref);
      sum += p0 + p1;
      const int chunk = c.consumer * (Cfg::kSTokens / 8) + nt;  // 16-byte chunk of the row
      *reinterpret_cast<uint32_t*>(sm.p + r * Cfg::kRowBytes + ((chunk ^ (r % 8)) * 16) +
                                   (c.lane % 4) * 4) = ptx::pack2<Element>(p0, p1);
    }
    st.l[half] = st.l[half] * rescale[half] + sum;
    st.m[half] = m_new;
  }
}

template <class Element>
__device__ __forceinline__ void write_output(const DecodeParams& p, const Segment& seg, int g,
                                             int m_block, const Coord& c, const Smem& sm,
                                             const RowState& st, const float (&o)[Cfg::kOAccum]) {
  const bool split = seg.slot >= 0;
  const int consumer = c.consumer, lane = c.lane;
  // Each consumer summed its half of every page: publish the halves, add them in a fixed order
  // (the same in both consumers, so both normalise identically).
#pragma unroll
  for (int half = 0; half < 2; ++half) {
    float l = st.l[half];
    l += __shfl_xor_sync(0xffffffffu, l, 1);
    l += __shfl_xor_sync(0xffffffffu, l, 2);
    if (lane % 4 == 0) sm.row_sum[consumer * Cfg::kBlockM + c.r_local + 8 * half] = l;
  }
  ptx::named_barrier_sync(static_cast<int>(NamedBarrier::kRowSums),
                          Cfg::kConsumers * Cfg::kWarpgroupThreads);
#pragma unroll
  for (int half = 0; half < 2; ++half) {
    const int r = c.r_local + 8 * half;
    const float l = sm.row_sum[r] + sm.row_sum[Cfg::kBlockM + r];
    const int row = m_block * Cfg::kBlockM + r;
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
  const Coord c = {t % 32, (t / 32) * 16 + (t % 32) / 4, consumer};
  const int lane = c.lane;
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
      compute_scores<Element>(s.q, sKV, consumer, sc);
      mask_and_publish_max(p, seg, tile, m_block, c, s, sc);
      ptx::named_barrier_sync(static_cast<int>(NamedBarrier::kRowMax), kConsumerThreads);
      float rescale[2];
      softmax_to_shared<Element>(c, s, sc, st, rescale);
      ptx::fence_proxy_async_shared();  // P written by threads, read by wgmma
#pragma unroll
      for (int nt = 0; nt < Cfg::kColsPerConsumer / 8; ++nt) {
        o[nt * 4 + 0] *= rescale[0];
        o[nt * 4 + 1] *= rescale[0];
        o[nt * 4 + 2] *= rescale[1];
        o[nt * 4 + 3] *= rescale[1];
      }
      ptx::named_barrier_sync(static_cast<int>(NamedBarrier::kPReady), kConsumerThreads);
      accumulate_pv<Element>(s.p, sKV + consumer * Cfg::kSubTilesPerConsumerV * Cfg::kSubTileBytes,
                             o);
      __syncwarp();
      if (lane == 0) ptx::mbarrier_arrive(&s.empty[stage]);
    }
    write_output<Element>(p, seg, g, m_block, c, s, st, o);
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
