// Combine kernel, fp16.
#include "kernels/common/combine.cuh"

namespace flash_mla::combine {

template cudaError_t launch_combine<__half>(const DecodeParams&, int, size_t, bool,
                                            cudaStream_t);
template cudaError_t adaptive_occupancy<__half>(int*);

}  // namespace flash_mla::combine
