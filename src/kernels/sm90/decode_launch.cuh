// Launch of the Hopper decode kernel: the KV tensor map, the shared-memory opt-in, the grid.
#pragma once

#include <cuda.h>
#include <cudaTypedefs.h>

#include <type_traits>

#include "kernels/common/launch.h"
#include "kernels/sm90/config.h"
#include "kernels/sm90/decode_kernel.cuh"
#include "kernels/sm90/launch.h"
#include "kernels/sm90/narrow_kernel.cuh"

namespace flash_mla::sm90 {

// cuTensorMapEncodeTiled through the runtime's driver entry point: no link against libcuda.
PFN_cuTensorMapEncodeTiled_v12000 tensor_map_encoder();

// The L2 promotion of the KV loads. A box row is 128 bytes of one token; 256-byte promotion also
// fetches the neighbouring 128 bytes, which the page's next box reads. Same-run A/Bs against
// 256 bytes everywhere (docs/perf-notes.md, "The KV loads' L2 promotion"): with one reader per
// page (the narrow kernel, the wide one with one m-block), 128 bytes gained 6.4-8.2% at 16 rows
// and 0.8-4.4% at 32 and 64 rows on the H200, and cost 0.1-0.8% at 16 rows on the H100; with
// co-readers (more than 64 rows) 256 bytes was 0.3-0.5% faster (H200).
inline CUtensorMapL2promotion kv_l2_promotion(bool co_readers) {
  return co_readers ? CU_TENSOR_MAP_L2_PROMOTION_L2_256B : CU_TENSOR_MAP_L2_PROMOTION_L2_128B;
}

template <class Element>
cudaError_t make_kv_tensor_map(const DecodeParams& p, CUtensorMapL2promotion promotion,
                               CUtensorMap* map) {
  PFN_cuTensorMapEncodeTiled_v12000 encode = tensor_map_encoder();
  if (encode == nullptr) return cudaErrorNotSupported;
  constexpr size_t kBytes = sizeof(Element);
  // Dimensions innermost first: channel, token in page, KV head, page. A dimension of one
  // element is never stepped over; give it the dense stride TMA accepts.
  const cuuint64_t dims[4] = {Cfg::kHeadDim, Cfg::kPageBlock, cuuint64_t(p.num_heads_kv),
                              cuuint64_t(p.num_blocks)};
  const cuuint64_t token = p.k_token_stride * kBytes;
  const cuuint64_t head = p.num_heads_kv > 1 ? p.k_head_stride * kBytes : token * Cfg::kPageBlock;
  const cuuint64_t block = p.num_blocks > 1 ? p.k_block_stride * kBytes : head * p.num_heads_kv;
  const cuuint64_t strides[3] = {token, head, block};
  const cuuint32_t box[4] = {Cfg::kSubTileCols, Cfg::kBlockN, 1, 1};
  const cuuint32_t elem_strides[4] = {1, 1, 1, 1};
  const CUtensorMapDataType type = std::is_same_v<Element, __nv_bfloat16>
                                       ? CU_TENSOR_MAP_DATA_TYPE_BFLOAT16
                                       : CU_TENSOR_MAP_DATA_TYPE_FLOAT16;
  const CUresult r = encode(map, type, 4, const_cast<void*>(p.k_cache), dims, strides, box,
                            elem_strides, CU_TENSOR_MAP_INTERLEAVE_NONE,
                            CU_TENSOR_MAP_SWIZZLE_128B, promotion,
                            CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
  return r == CUDA_SUCCESS ? cudaSuccess : cudaErrorInvalidValue;
}

template <class Element>
cudaError_t launch_hopper_decode(const DecodeParams& params, int m_blocks, cudaStream_t stream) {
  CUtensorMap map;
  if (cudaError_t err = make_kv_tensor_map<Element>(params, kv_l2_promotion(m_blocks > 1), &map);
      err != cudaSuccess) {
    return err;
  }
  // Two instantiations: the order of consumer 0's next Q·Kᵀ that measured faster for each case.
  auto* kernel = m_blocks > 1 ? hopper_decode_kernel<Element, NextScores::kAfterPageB>
                              : hopper_decode_kernel<Element, NextScores::kSplit>;
  // Per call, as for the portable kernel: the opt-in belongs to the current device.
  if (cudaError_t err = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                             static_cast<int>(Cfg::kSmemBytes));
      err != cudaSuccess) {
    return err;
  }
  // The m_blocks CTAs of a part read the same pages. With m_block the fastest grid index they are
  // neighbours in launch order, which puts them on neighbouring SMs of one GPC; that raised the
  // 128/256-row cases by 4-14% on H100 and H200 (same-run A/B; docs/perf-notes.md, "Co-readers
  // side by side"). The probe rates first quoted for it depend on the probe's build ("Load
  // probes, re-run").
  const dim3 grid(m_blocks, params.num_sm_parts, params.num_heads_kv);
  return launch_kernel(kernel, grid, dim3(Cfg::kThreads), Cfg::kSmemBytes, stream,
                       /*dependent=*/true, params, map);
}

template <class Element, int kRows>
cudaError_t launch_hopper_narrow(const DecodeParams& params, cudaStream_t stream) {
  using C = NarrowConfig<kRows>;
  CUtensorMap map;
  if (cudaError_t err = make_kv_tensor_map<Element>(params, kv_l2_promotion(false), &map);
      err != cudaSuccess) {
    return err;
  }
  auto* kernel = hopper_narrow_kernel<Element, kRows>;
  if (cudaError_t err = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                             static_cast<int>(C::kSmemBytes));
      err != cudaSuccess) {
    return err;
  }
  const dim3 grid(params.num_sm_parts, 1, params.num_heads_kv);
  return launch_kernel(kernel, grid, dim3(C::kThreads), C::kSmemBytes, stream,
                       /*dependent=*/true, params, map);
}

}  // namespace flash_mla::sm90
