// Combine kernel, bf16.
#include "kernels/common/combine.cuh"

namespace flash_mla::combine {

template cudaError_t launch_combine<__nv_bfloat16>(const DecodeParams&, int, size_t, bool,
                                                   cudaStream_t);
template cudaError_t adaptive_occupancy<__nv_bfloat16>(int*);

}  // namespace flash_mla::combine
