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
  // m_block fastest, as for the Hopper kernel: the m-blocks of a part read the same pages and
  // run side by side. H100, same-run A/B: +0.3 to +2.3% at 64-256 rows, level at 16
  // (docs/perf-notes.md, "The portable kernel's co-readers").
  const dim3 grid(m_blocks, params.num_sm_parts, params.num_heads_kv);
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
