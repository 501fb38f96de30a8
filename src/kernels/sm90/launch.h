// Host entry points of the Hopper decode kernel, one explicit instantiation per dtype.
#pragma once

#include <cuda_runtime_api.h>

#include "kernels/params.h"

namespace flash_mla::sm90 {

// Whether the KV cache's strides can be described by a TMA tensor map (every dimension with
// more than one element needs a non-zero stride; strides are multiples of 16 bytes already).
bool kv_layout_supported(const DecodeParams& params);

// Whether this binary holds the kernel for the current device (sm_90a SASS).
bool hopper_kernel_available();

// Builds the KV tensor map and launches grid (num_sm_parts, m_blocks, h_kv) on `stream`.
template <class Element>
cudaError_t launch_hopper_decode(const DecodeParams& params, int m_blocks, cudaStream_t stream);

// The narrow kernel for at most kRows (sm90::kNarrowRows) query rows per KV head: grid
// (num_sm_parts, 1, h_kv).
template <class Element, int kRows>
cudaError_t launch_hopper_narrow(const DecodeParams& params, cudaStream_t stream);

}  // namespace flash_mla::sm90
