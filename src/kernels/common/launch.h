// Kernel launch with programmatic dependent launch (CUDA programming guide: "Programmatic
// Dependent Launch and Synchronization"): with `dependent`, the kernel may be scheduled before
// the previous kernel in the stream has finished (once every CTA of that kernel has called
// ptx::griddep_launch_dependents or exited), so its launch overlaps that kernel's end; the kernel
// itself must call ptx::griddep_wait before reading anything the previous kernel writes.
// Hopper and later only (the attribute needs sm_90).
#pragma once

#include <cuda_runtime.h>

#include <utility>

namespace flash_mla {

template <class... Params, class... Args>
cudaError_t launch_kernel(void (*kernel)(Params...), dim3 grid, dim3 block, size_t smem,
                          cudaStream_t stream, bool dependent, Args&&... args) {
  cudaLaunchAttribute attr[1];
  attr[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attr[0].val.programmaticStreamSerializationAllowed = 1;
  cudaLaunchConfig_t cfg = {};
  cfg.gridDim = grid;
  cfg.blockDim = block;
  cfg.dynamicSmemBytes = smem;
  cfg.stream = stream;
  cfg.attrs = attr;
  cfg.numAttrs = dependent ? 1 : 0;
  return cudaLaunchKernelEx(&cfg, kernel, std::forward<Args>(args)...);
}

}  // namespace flash_mla
