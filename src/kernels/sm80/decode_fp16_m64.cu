// Portable decode kernel, fp16, 64 query rows per CTA (4 row group(s)).
#include "kernels/sm80/decode_launch.cuh"

namespace flash_mla::sm80 {

template cudaError_t launch_portable_decode<__half, 4>(const DecodeParams&, int, cudaStream_t);
template cudaError_t portable_decode_occupancy<__half, 4>(int*);

}  // namespace flash_mla::sm80
