// The Hopper narrow decode kernel for bf16, 16 query rows (one instantiation per file).
#include "kernels/sm90/decode_launch.cuh"

namespace flash_mla::sm90 {
template cudaError_t launch_hopper_narrow<__nv_bfloat16, 16>(const DecodeParams&, cudaStream_t);
}  // namespace flash_mla::sm90
