// Host entry point of the combine kernel (combine.cuh), one instantiation per dtype.
#pragma once

#include <cuda_runtime_api.h>

#include "kernels/params.h"

namespace flash_mla::combine {

// `adaptive_wave`: CTAs of the adaptive kernel (few sequences) the device runs at once;
// `smem_optin`: the shared memory one CTA may opt into.
template <class Element>
cudaError_t launch_combine(const DecodeParams& params, int adaptive_wave, size_t smem_optin,
                           bool dependent, cudaStream_t stream);
// CTAs of the adaptive kernel resident on one SM (for adaptive_wave).
template <class Element>
cudaError_t adaptive_occupancy(int* ctas_per_sm);

}  // namespace flash_mla::combine
