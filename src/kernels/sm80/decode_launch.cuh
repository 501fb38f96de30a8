// Template bodies of launch.h; included only by the per-instantiation .cu files.
#pragma once

#include "kernels/sm80/decode_kernel.cuh"
#include "kernels/sm80/launch.h"

namespace flash_mla::sm80 {

template <class Element, int kRowGroups>
cudaError_t launch_portable_decode(const DecodeParams& params, int m_blocks, cudaStream_t stream) {
  using Cfg = PortableConfig<kRowGroups>;
  auto* kernel = portable_decode_kernel<Element, Cfg>;
  // Set on every launch: the attribute is per device, and it is a host-side call (no sync).
  const size_t smem = Cfg::smem_bytes(params.kv_stages);
  cudaError_t err = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                         static_cast<int>(smem));
  if (err != cudaSuccess) return err;
  const dim3 grid(params.num_sm_parts, m_blocks, params.num_heads_kv);
  kernel<<<grid, Cfg::kThreads, smem, stream>>>(params);
  return cudaGetLastError();
}

template <class Element, int kRowGroups>
cudaError_t portable_decode_occupancy(int stages, int* ctas_per_sm) {
  using Cfg = PortableConfig<kRowGroups>;
  auto* kernel = portable_decode_kernel<Element, Cfg>;
  const size_t smem = Cfg::smem_bytes(stages);
  cudaError_t err = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                         static_cast<int>(smem));
  if (err != cudaSuccess) return err;
  return cudaOccupancyMaxActiveBlocksPerMultiprocessor(ctas_per_sm, kernel, Cfg::kThreads, smem);
}

}  // namespace flash_mla::sm80
