// Portable split-KV decode kernel: mma.sync + ldmatrix + cp.async, runs on sm_80 and newer.
//
// Grid: (m_blocks, num_sm_parts, h_kv). CTA (m_block, part, g) walks the (sequence, page-block)
// segments its scheduling record names and, for each, streams the KV tokens through a
// cp.async pipeline (params.kv_stages tiles deep) while keeping an online softmax. A segment that holds a whole
// sequence writes `out`/`lse` directly; a piece of a split sequence writes fp32 partials into
// its workspace slot for the combine kernel. See config.h for the tiling.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cmath>
#include <cstdint>

#include "kernels/common/ptx.h"
#include "kernels/common/row_finish.h"
#include "kernels/common/segments.h"
#include "kernels/params.h"
#include "kernels/sm80/config.h"
#include "scheduler/schedule.h"

namespace flash_mla::sm80 {

template <class Element, class Cfg>
struct SharedStorage {
  Element* q;        // [kBlockM][kRowStride]
  float* s;          // [kRowGroups][kWarpsPerGroup][16][kSStride] partial scores (k-split
                     // only; aliases q, whose contents live in registers by then)
  Element* p;        // [kBlockM][kPStride] probabilities of the current tile
  float* row_max;    // [kRowGroups][kWarpsPerGroup][16] per-warp tile maxima
  float* row_sum;    // [kRowGroups][kWarpsPerGroup][16] per-warp sums (epilogue)
  Element* kv;       // [stages][kBlockN][kRowStride]; K and V are the same tile

  __device__ explicit SharedStorage(char* base) {
    q = reinterpret_cast<Element*>(base);
    s = reinterpret_cast<float*>(base + (Cfg::kKSplitScores ? 0 : Cfg::kQBytes));
    base += Cfg::kQAndSBytes;
    p = reinterpret_cast<Element*>(base);
    base += Cfg::kPBytes;
    row_max = reinterpret_cast<float*>(base);
    base += Cfg::kRowStatBytes;
    row_sum = reinterpret_cast<float*>(base);
    base += Cfg::kRowStatBytes;
    kv = reinterpret_cast<Element*>(base);
  }

  // A stage by arithmetic, not by indexing a pointer array: a run-time index into an array of
  // pointers would put the array in local memory.
  __device__ Element* kv_stage(int stage) const {
    return kv + stage * (Cfg::kKVStageBytes / sizeof(Element));
  }
};

// Where this thread sits in the tiling.
struct ThreadCoord {
  int tid, lane, warp_in_group, row_group;
  int gid;  // lane / 4: the fragment row (and row + 8)
  int tig;  // lane % 4: the fragment column pair
};

template <class Cfg>
__device__ __forceinline__ ThreadCoord thread_coord() {
  ThreadCoord c;
  c.tid = threadIdx.x;
  c.lane = c.tid % 32;
  const int warp = c.tid / 32;
  c.warp_in_group = warp % Cfg::kWarpsPerGroup;
  c.row_group = warp / Cfg::kWarpsPerGroup;
  c.gid = c.lane / 4;
  c.tig = c.lane % 4;
  return c;
}

// Q rows [m_block * kBlockM, +kBlockM) of KV head g into shared memory; rows past M are zeros.
template <class Element, class Cfg>
__device__ __forceinline__ void load_q_tile(const DecodeParams& p, Element* sQ, int batch, int g,
                                            int m_block, int tid) {
  const Element* gQ = static_cast<const Element*>(p.q);
  constexpr int kChunks = Cfg::kBlockM * Cfg::kChunksPerRow;
  for (int c = tid; c < kChunks; c += Cfg::kThreads) {
    const int r = c / Cfg::kChunksPerRow;
    const int chunk = c % Cfg::kChunksPerRow;
    const int row = m_block * Cfg::kBlockM + r;
    const bool valid = row < p.rows_per_kv;
    const Element* src = gQ;
    if (valid) src = gQ + q_offset(p, batch, g, row) + chunk * Cfg::kChunkElems;
    ptx::cp_async_16(sQ + r * Cfg::kRowStride + chunk * Cfg::kChunkElems, src, valid);
  }
}

// KV tokens [tile_begin, tile_begin + kBlockN) of one page; tokens at or past token_end are
// zero-filled and never read, so NaN past the sequence cannot reach P·V.
template <class Element, class Cfg>
__device__ __forceinline__ void load_kv_tile(const DecodeParams& p, Element* sKV,
                                             const Segment& seg, int g, int tile_begin, int tid) {
  const Element* gK = static_cast<const Element*>(p.k_cache);
  const int page = p.block_table[seg.batch * p.block_table_batch_stride +
                                 tile_begin / Cfg::kPageBlock];
  const Element* page_base = gK + static_cast<int64_t>(page) * p.k_block_stride +
                             g * p.k_head_stride;
  const int token_in_page = tile_begin % Cfg::kPageBlock;
  constexpr int kChunks = Cfg::kBlockN * Cfg::kChunksPerRow;
  for (int c = tid; c < kChunks; c += Cfg::kThreads) {
    const int t = c / Cfg::kChunksPerRow;
    const int chunk = c % Cfg::kChunksPerRow;
    const bool valid = tile_begin + t < seg.token_end;
    const Element* src = page_base + (token_in_page + t) * p.k_token_stride +
                         chunk * Cfg::kChunkElems;
    ptx::cp_async_16(sKV + t * Cfg::kRowStride + chunk * Cfg::kChunkElems, valid ? src : gK,
                     valid);
  }
}

// The A fragments of this warp's k-slice of Q: 16 rows x 144 channels.
template <class Element, class Cfg>
struct QSlice {
  uint32_t a[Cfg::kKStepsPerWarp][4];
};

template <class Element, class Cfg>
__device__ __forceinline__ const Element* q_fragment_base(const Element* sQ, const ThreadCoord& c) {
  // ldmatrix.x4 of a 16x16 A tile: lanes 0-15 give rows 0-15 at column 0, lanes 16-31 at column 8.
  return sQ + (c.row_group * Cfg::kRowsPerGroup + c.lane % 16) * Cfg::kRowStride +
         (c.lane / 16) * 8 + c.warp_in_group * Cfg::kKStepsPerWarp * Cfg::kMmaK;
}

template <class Element, class Cfg>
__device__ __forceinline__ void load_q_slice(const Element* sQ, const ThreadCoord& c,
                                             QSlice<Element, Cfg>& q) {
  const Element* rows = q_fragment_base<Element, Cfg>(sQ, c);
#pragma unroll
  for (int kk = 0; kk < Cfg::kKStepsPerWarp; ++kk) ptx::ldmatrix_x4(q.a[kk], rows + kk * Cfg::kMmaK);
}

// k-split (16-row CTAs): partial S[16 x 32] over this warp's 144 channels, Q from registers.
// Each ldmatrix.x4 of K yields the B fragments of two n8 tiles for one k-step; the four n8
// tiles are independent mma chains.
template <class Element, class Cfg>
__device__ __forceinline__ void compute_partial_scores(const QSlice<Element, Cfg>& q_regs,
                                                       const Element* sKV, const ThreadCoord& c,
                                                       float (&sp)[Cfg::kSTiles][4]) {
#pragma unroll
  for (int nt = 0; nt < Cfg::kSTiles; ++nt) sp[nt][0] = sp[nt][1] = sp[nt][2] = sp[nt][3] = 0.f;
  // Lanes 0-7: tokens 0-7 at k; 8-15: tokens 0-7 at k+8; 16-23: tokens 8-15 at k; 24-31: 8-15 at k+8.
  const Element* k_rows = sKV + ((c.lane / 16) * 8 + c.lane % 8) * Cfg::kRowStride +
                          ((c.lane / 8) % 2) * 8 + c.warp_in_group * Cfg::kKStepsPerWarp * Cfg::kMmaK;
#pragma unroll
  for (int kk = 0; kk < Cfg::kKStepsPerWarp; ++kk) {
#pragma unroll
    for (int np = 0; np < Cfg::kSTiles / 2; ++np) {
      uint32_t kb[4];
      ptx::ldmatrix_x4(kb, k_rows + np * 16 * Cfg::kRowStride + kk * Cfg::kMmaK);
      ptx::mma_16816<Element>(sp[2 * np], q_regs.a[kk], kb[0], kb[1]);
      ptx::mma_16816<Element>(sp[2 * np + 1], q_regs.a[kk], kb[2], kb[3]);
    }
  }
}

// Publishes this warp's partial scores of all 32 tokens and returns the full scores of its own
// 8 tokens [8w, 8w + 8), summed over the four k-slices in warp order (fixed order: bitwise
// reproducible). Accumulator layout: s[0..1] row gid, s[2..3] row gid + 8, columns 2 tig.
template <class Element, class Cfg>
__device__ __forceinline__ void reduce_scores(float* sS, const ThreadCoord& c,
                                              const float (&sp)[Cfg::kSTiles][4], float (&s)[4]) {
  constexpr int kWarpFloats = Cfg::kRowsPerGroup * Cfg::kSStride;
  float* group = sS + c.row_group * Cfg::kWarpsPerGroup * kWarpFloats;
  float* mine = group + c.warp_in_group * kWarpFloats + c.gid * Cfg::kSStride + c.tig * 2;
#pragma unroll
  for (int nt = 0; nt < Cfg::kSTiles; ++nt) {
    *reinterpret_cast<float2*>(mine + nt * 8) = make_float2(sp[nt][0], sp[nt][1]);
    *reinterpret_cast<float2*>(mine + 8 * Cfg::kSStride + nt * 8) = make_float2(sp[nt][2], sp[nt][3]);
  }
  ptx::named_barrier_sync(static_cast<int>(Barrier::kRowGroupBase) + c.row_group,
                          Cfg::kThreadsPerGroup);
  const float* slice = group + c.gid * Cfg::kSStride + c.warp_in_group * 8 + c.tig * 2;
  s[0] = s[1] = s[2] = s[3] = 0.f;
#pragma unroll
  for (int w = 0; w < Cfg::kWarpsPerGroup; ++w) {
    const float2 a = *reinterpret_cast<const float2*>(slice + w * kWarpFloats);
    const float2 b = *reinterpret_cast<const float2*>(slice + w * kWarpFloats + 8 * Cfg::kSStride);
    s[0] += a.x; s[1] += a.y; s[2] += b.x; s[3] += b.y;
  }
}

// Token split (32-row CTAs): S[16 rows x 8 tokens] = Q K^T for this warp's tokens over all 576
// channels, fp32. kQKChains accumulators shorten the dependent mma chain over the 36 k-steps.
template <class Element, class Cfg>
__device__ __forceinline__ void compute_scores(const Element* sQ, const Element* sKV,
                                               const ThreadCoord& c, float (&s)[4]) {
  float acc[Cfg::kQKChains][4] = {};
  const Element* q_rows = sQ + (c.row_group * Cfg::kRowsPerGroup + c.lane % 16) * Cfg::kRowStride +
                          (c.lane / 16) * 8;
  const Element* k_rows = sKV + (c.warp_in_group * Cfg::kTokensPerWarp + c.lane % 8) *
                                    Cfg::kRowStride + (c.lane / 8) * 8;
#pragma unroll
  for (int ks = 0; ks < Cfg::kQKSteps; ks += 2) {
    uint32_t kb[4], qa0[4], qa1[4];
    ptx::ldmatrix_x4(kb, k_rows + ks * Cfg::kMmaK);  // k-steps ks and ks+1 of 8 tokens
    ptx::ldmatrix_x4(qa0, q_rows + ks * Cfg::kMmaK);
    ptx::ldmatrix_x4(qa1, q_rows + (ks + 1) * Cfg::kMmaK);
    ptx::mma_16816<Element>(acc[ks % Cfg::kQKChains], qa0, kb[0], kb[1]);
    ptx::mma_16816<Element>(acc[(ks + 1) % Cfg::kQKChains], qa1, kb[2], kb[3]);
  }
#pragma unroll
  for (int e = 0; e < 4; ++e) {
    s[e] = 0.f;
#pragma unroll
    for (int k = 0; k < Cfg::kQKChains; ++k) s[e] += acc[k][e];
  }
}

// Online-softmax state of the two rows (gid, gid + 8) this thread holds.
struct RowState {
  float m[2];  // running max, base-2 scaled domain
  float l[2];  // this thread's share of the running sum
};

// Masks and scales the scores, agrees on the new row maxima with the other warps of the row
// group, turns scores into probabilities in shared memory and returns the factor by which the
// old output must be rescaled.
template <class Element, class Cfg>
__device__ __forceinline__ void update_softmax(const DecodeParams& p, const Segment& seg,
                                               int m_block, int tile_begin, const ThreadCoord& c,
                                               SharedStorage<Element, Cfg>& smem, float (&s)[4],
                                               RowState& st, float (&rescale)[2]) {
  const int barrier = static_cast<int>(Barrier::kRowGroupBase) + c.row_group;
  const int local_row0 = c.row_group * Cfg::kRowsPerGroup + c.gid;
  float tile_max[2];
#pragma unroll
  for (int half = 0; half < 2; ++half) {
    const int row = m_block * Cfg::kBlockM + local_row0 + 8 * half;
    const int i = query_position(p, row);
    const int causal_limit = seg.seqlen - p.seqlen_q + i;  // last visible key when causal
    float mx = -INFINITY;
#pragma unroll
    for (int e = 0; e < 2; ++e) {
      const int token = tile_begin + c.warp_in_group * Cfg::kTokensPerWarp + c.tig * 2 + e;
      const bool valid = token < seg.token_end && (!p.causal || token <= causal_limit);
      float& x = s[2 * half + e];
      x = valid ? x * p.scale_log2 : -INFINITY;
      mx = fmaxf(mx, x);
    }
    mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
    mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
    tile_max[half] = mx;
  }
  float* group_max = smem.row_max + c.row_group * Cfg::kWarpsPerGroup * Cfg::kRowsPerGroup;
  if (c.tig == 0) {
    group_max[c.warp_in_group * Cfg::kRowsPerGroup + c.gid] = tile_max[0];
    group_max[c.warp_in_group * Cfg::kRowsPerGroup + c.gid + 8] = tile_max[1];
  }
  ptx::named_barrier_sync(barrier, Cfg::kThreadsPerGroup);

  Element* sP = smem.p + local_row0 * Cfg::kPStride + c.warp_in_group * Cfg::kTokensPerWarp +
                c.tig * 2;
#pragma unroll
  for (int half = 0; half < 2; ++half) {
    float m_new = st.m[half];
#pragma unroll
    for (int w = 0; w < Cfg::kWarpsPerGroup; ++w) {
      m_new = fmaxf(m_new, group_max[w * Cfg::kRowsPerGroup + c.gid + 8 * half]);
    }
    // A row that has seen no valid key keeps max -inf; subtract 0 instead so exp2 gives 0, not NaN.
    const float m_use = m_new == -INFINITY ? 0.f : m_new;
    rescale[half] = exp2f(st.m[half] - m_use);
    const float p0 = exp2f(s[2 * half] - m_use);
    const float p1 = exp2f(s[2 * half + 1] - m_use);
    st.l[half] = st.l[half] * rescale[half] + p0 + p1;
    st.m[half] = m_new;
    *reinterpret_cast<uint32_t*>(sP + 8 * half * Cfg::kPStride) = ptx::pack2<Element>(p0, p1);
  }
  ptx::named_barrier_sync(barrier, Cfg::kThreadsPerGroup);
}

// O[16 x 128] = O * rescale + P[16 x 32] V[32 x 128] for this warp's output columns.
template <class Element, class Cfg>
__device__ __forceinline__ void accumulate_pv(const Element* sP, const Element* sKV,
                                              const ThreadCoord& c, const float (&rescale)[2],
                                              float (&o)[Cfg::kOTiles][4]) {
#pragma unroll
  for (int nt = 0; nt < Cfg::kOTiles; ++nt) {
    o[nt][0] *= rescale[0];
    o[nt][1] *= rescale[0];
    o[nt][2] *= rescale[1];
    o[nt][3] *= rescale[1];
  }
  const Element* p_rows = sP + (c.row_group * Cfg::kRowsPerGroup + c.lane % 16) * Cfg::kPStride +
                          (c.lane / 16) * 8;
  // ldmatrix.trans rows: tokens (lane % 8) + 8 * ((lane / 8) % 2), columns 8 * (lane / 16).
  const Element* v_rows = sKV + (c.lane % 8 + 8 * ((c.lane / 8) % 2)) * Cfg::kRowStride +
                          c.warp_in_group * Cfg::kColsPerWarp + (c.lane / 16) * 8;
#pragma unroll
  for (int ks = 0; ks < Cfg::kPVSteps; ++ks) {
    uint32_t pa[4];
    ptx::ldmatrix_x4(pa, p_rows + ks * Cfg::kMmaK);
#pragma unroll
    for (int np = 0; np < Cfg::kOTiles / 2; ++np) {
      uint32_t vb[4];
      ptx::ldmatrix_x4_trans(vb, v_rows + ks * Cfg::kMmaK * Cfg::kRowStride + np * 16);
      ptx::mma_16816<Element>(o[2 * np], pa, vb[0], vb[1]);
      ptx::mma_16816<Element>(o[2 * np + 1], pa, vb[2], vb[3]);
    }
  }
}

// Normalises and stores this warp's rows: to out/lse for a whole sequence, to the workspace
// slot (fp32, lse -inf for "no valid key") for a piece of a split one.
template <class Element, class Cfg>
__device__ __forceinline__ void write_output(const DecodeParams& p, const Segment& seg, int g,
                                             int m_block, const ThreadCoord& c,
                                             SharedStorage<Element, Cfg>& smem, RowState& st,
                                             float (&o)[Cfg::kOTiles][4]) {
  const int barrier = static_cast<int>(Barrier::kRowGroupBase) + c.row_group;
  float* group_sum = smem.row_sum + c.row_group * Cfg::kWarpsPerGroup * Cfg::kRowsPerGroup;
#pragma unroll
  for (int half = 0; half < 2; ++half) {
    st.l[half] += __shfl_xor_sync(0xffffffffu, st.l[half], 1);
    st.l[half] += __shfl_xor_sync(0xffffffffu, st.l[half], 2);
  }
  if (c.tig == 0) {
    group_sum[c.warp_in_group * Cfg::kRowsPerGroup + c.gid] = st.l[0];
    group_sum[c.warp_in_group * Cfg::kRowsPerGroup + c.gid + 8] = st.l[1];
  }
  ptx::named_barrier_sync(barrier, Cfg::kThreadsPerGroup);

  const bool split = seg.slot >= 0;
#pragma unroll
  for (int half = 0; half < 2; ++half) {
    const int row = m_block * Cfg::kBlockM + c.row_group * Cfg::kRowsPerGroup + c.gid + 8 * half;
    if (row >= p.rows_per_kv) continue;
    float l = 0.f;  // fixed summation order: identical in every warp, bitwise reproducible
#pragma unroll
    for (int w = 0; w < Cfg::kWarpsPerGroup; ++w) l += group_sum[w * Cfg::kRowsPerGroup + c.gid + 8 * half];
    const FinishedRow fin = finish_row(st.m[half], l, split);
    const float inv = fin.inv_sum, lse = fin.lse;
    const int col0 = c.warp_in_group * Cfg::kColsPerWarp + c.tig * 2;
    if (split) {
      const int64_t accum_row = workspace_row(p, seg.slot, g, row);
      float* dst = p.o_accum + accum_row * Cfg::kHeadDimV + col0;
#pragma unroll
      for (int nt = 0; nt < Cfg::kOTiles; ++nt) {
        *reinterpret_cast<float2*>(dst + nt * 8) =
            make_float2(o[nt][2 * half] * inv, o[nt][2 * half + 1] * inv);
      }
      if (c.warp_in_group == 0 && c.tig == 0) p.lse_accum[accum_row] = lse;
    } else {
      Element* dst = static_cast<Element*>(p.out) + out_offset(p, seg.batch, g, row) + col0;
#pragma unroll
      for (int nt = 0; nt < Cfg::kOTiles; ++nt) {
        *reinterpret_cast<uint32_t*>(dst + nt * 8) =
            ptx::pack2<Element>(o[nt][2 * half] * inv, o[nt][2 * half + 1] * inv);
      }
      if (c.warp_in_group == 0 && c.tig == 0) p.lse[lse_offset(p, seg.batch, g, row)] = lse;
    }
  }
}

// One segment: Q load, the pipelined KV loop, the epilogue.
template <class Element, class Cfg>
__device__ __forceinline__ void run_segment(const DecodeParams& p, const Segment& seg, int g,
                                            int m_block, const ThreadCoord& c,
                                            SharedStorage<Element, Cfg>& smem) {
  __syncthreads();  // the previous segment is done with every shared buffer
  const int stages = p.kv_stages;
  const int num_tiles = (seg.token_end - seg.token_begin + Cfg::kBlockN - 1) / Cfg::kBlockN;
  // Prologue: Q with tile 0, then tiles 1 .. stages - 2, one commit group each (empty groups
  // past the last tile keep the count of pending groups the same in every iteration).
  load_q_tile<Element, Cfg>(p, smem.q, seg.batch, g, m_block, c.tid);
  for (int t = 0; t < stages - 1; ++t) {
    if (t < num_tiles) {
      load_kv_tile<Element, Cfg>(p, smem.kv_stage(t), seg, g, seg.token_begin + t * Cfg::kBlockN,
                                 c.tid);
    }
    ptx::cp_async_commit();
  }

  QSlice<Element, Cfg> q_regs;
  RowState st = {{-INFINITY, -INFINITY}, {0.f, 0.f}};
  float o[Cfg::kOTiles][4] = {};
  for (int t = 0; t < num_tiles; ++t) {
    // Groups committed so far: stages - 1 + t; tile t is group t, so stages - 2 may stay
    // pending. The barrier then also means every warp has finished tile t - 1, whose buffer
    // receives tile t + stages - 1.
    ptx::cp_async_wait_dynamic(stages - 2);
    __syncthreads();
    if constexpr (Cfg::kKSplitScores) {
      if (t == 0) {
        load_q_slice<Element, Cfg>(smem.q, c, q_regs);
        __syncthreads();  // Q's buffer becomes the partial-score buffer
      }
    }
    const int tile_begin = seg.token_begin + t * Cfg::kBlockN;
    const int next = t + stages - 1;
    if (next < num_tiles) {
      load_kv_tile<Element, Cfg>(p, smem.kv_stage(next % stages), seg, g,
                                 seg.token_begin + next * Cfg::kBlockN, c.tid);
    }
    ptx::cp_async_commit();

    const Element* sKV = smem.kv_stage(t % stages);
    float s[4];
    if constexpr (Cfg::kKSplitScores) {
      float sp[Cfg::kSTiles][4];
      compute_partial_scores<Element, Cfg>(q_regs, sKV, c, sp);
      reduce_scores<Element, Cfg>(smem.s, c, sp, s);
    } else {
      compute_scores<Element, Cfg>(smem.q, sKV, c, s);
    }
    float rescale[2];
    update_softmax<Element, Cfg>(p, seg, m_block, tile_begin, c, smem, s, st, rescale);
    accumulate_pv<Element, Cfg>(smem.p, sKV, c, rescale, o);
  }
  // Drain the empty trailing groups so the next segment starts with none pending.
  ptx::cp_async_wait<0>();
  write_output<Element, Cfg>(p, seg, g, m_block, c, smem, st, o);
}

template <class Element, class Cfg>
__global__ void __launch_bounds__(Cfg::kThreads, Cfg::kMinCtasPerSm)
    portable_decode_kernel(const __grid_constant__ DecodeParams p) {
  extern __shared__ __align__(16) char smem_raw[];
  SharedStorage<Element, Cfg> smem(smem_raw);
  const ThreadCoord c = thread_coord<Cfg>();
  const int m_block = blockIdx.x;  // the m-blocks of a part read the same pages: neighbours
  const int part = blockIdx.y;
  const int g = blockIdx.z;

  for_each_segment(p, part, [&](const Segment& seg) {
    run_segment<Element, Cfg>(p, seg, g, m_block, c, smem);
  });
}

}  // namespace flash_mla::sm80
