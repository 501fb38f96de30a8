// Portable decode kernel, fp16, 16 query rows per CTA (1 row group(s)).
#include "kernels/sm80/decode_launch.cuh"

namespace flash_mla::sm80 {

template cudaError_t launch_portable_decode<__half, 1>(const DecodeParams&, int, cudaStream_t);
template cudaError_t portable_decode_occupancy<__half, 1>(int, int*);

}  // namespace flash_mla::sm80
