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
  cudaError_t err = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                         static_cast<int>(Cfg::kSmemBytes));
  if (err != cudaSuccess) return err;
  const dim3 grid(params.num_sm_parts, m_blocks, params.num_heads_kv);
  kernel<<<grid, Cfg::kThreads, Cfg::kSmemBytes, stream>>>(params);
  return cudaGetLastError();
}

template <class Element, int kRowGroups>
cudaError_t portable_decode_occupancy(int* ctas_per_sm) {
  using Cfg = PortableConfig<kRowGroups>;
  auto* kernel = portable_decode_kernel<Element, Cfg>;
  cudaError_t err = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                         static_cast<int>(Cfg::kSmemBytes));
  if (err != cudaSuccess) return err;
  return cudaOccupancyMaxActiveBlocksPerMultiprocessor(ctas_per_sm, kernel, Cfg::kThreads,
                                                       Cfg::kSmemBytes);
}

}  // namespace flash_mla::sm80
