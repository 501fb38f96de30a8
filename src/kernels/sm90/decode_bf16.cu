// The Hopper decode kernel for bf16 (one instantiation per file).
#include "kernels/sm90/decode_launch.cuh"

namespace flash_mla::sm90 {
template cudaError_t launch_hopper_decode<__nv_bfloat16>(const DecodeParams&, int, cudaStream_t);
}  // namespace flash_mla::sm90
