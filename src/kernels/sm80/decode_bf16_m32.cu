// Portable decode kernel, bf16, 32 query rows per CTA (2 row group(s)).
#include "kernels/sm80/decode_launch.cuh"

namespace flash_mla::sm80 {

template cudaError_t launch_portable_decode<__nv_bfloat16, 2>(const DecodeParams&, int, cudaStream_t);
template cudaError_t portable_decode_occupancy<__nv_bfloat16, 2>(int, int*);

}  // namespace flash_mla::sm80
