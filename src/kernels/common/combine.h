// Host entry point of the combine kernel (combine.cuh), one instantiation per dtype.
#pragma once

#include <cuda_runtime_api.h>

#include "kernels/params.h"

namespace flash_mla::combine {

template <class Element>
cudaError_t launch_combine(const DecodeParams& params, int slots_wave, bool dependent,
                           cudaStream_t stream);
// CTAs of the combine kernel's slots shape resident on one SM (for slots_wave).
template <class Element>
cudaError_t slots_shape_occupancy(int* ctas_per_sm);

}  // namespace flash_mla::combine
