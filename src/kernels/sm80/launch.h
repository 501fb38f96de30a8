// Host entry points of the portable decode kernel, one explicit instantiation per .cu file.
#pragma once

#include <cuda_runtime_api.h>

#include "kernels/params.h"

namespace flash_mla::sm80 {

// Launches grid (num_sm_parts, m_blocks, h_kv) on `stream` with params.kv_stages stages.
template <class Element, int kRowGroups>
cudaError_t launch_portable_decode(const DecodeParams& params, int m_blocks, cudaStream_t stream);

// CTAs of this configuration that fit on one SM of the current device (0 if none).
template <class Element, int kRowGroups>
cudaError_t portable_decode_occupancy(int stages, int* ctas_per_sm);

// Dynamic shared memory of a configuration, bytes (0 for an unknown row-group count).
size_t portable_decode_smem_bytes(int row_groups, int stages);

}  // namespace flash_mla::sm80
