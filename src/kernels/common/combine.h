// Host entry point of the combine kernel (combine.cuh), one instantiation per dtype.
#pragma once

#include <cuda_runtime_api.h>

#include "kernels/params.h"

namespace flash_mla::combine {

template <class Element>
cudaError_t launch_combine(const DecodeParams& params, int num_sms, bool dependent,
                           cudaStream_t stream);

}  // namespace flash_mla::combine
