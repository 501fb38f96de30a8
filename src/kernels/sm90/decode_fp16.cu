// The Hopper decode kernel for fp16 (one instantiation per file).
#include "kernels/sm90/decode_launch.cuh"

namespace flash_mla::sm90 {
template cudaError_t launch_hopper_decode<__half>(const DecodeParams&, int, cudaStream_t);
}  // namespace flash_mla::sm90
