// The Hopper narrow decode kernel for fp16, 32 query rows (one instantiation per file).
#include "kernels/sm90/decode_launch.cuh"

namespace flash_mla::sm90 {
template cudaError_t launch_hopper_narrow<__half, 32>(const DecodeParams&, cudaStream_t);
}  // namespace flash_mla::sm90
