// Host helpers of the Hopper kernel shared by both dtypes.
#include <mutex>

#include "kernels/sm90/decode_launch.cuh"

namespace flash_mla::sm90 {

PFN_cuTensorMapEncodeTiled_v12000 tensor_map_encoder() {
  static std::once_flag once;
  static PFN_cuTensorMapEncodeTiled_v12000 fn = nullptr;
  std::call_once(once, [] {
    void* ptr = nullptr;
    cudaDriverEntryPointQueryResult query{};
    if (cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", &ptr, 12000, cudaEnableDefault,
                                         &query) == cudaSuccess &&
        query == cudaDriverEntryPointSuccess) {
      fn = reinterpret_cast<PFN_cuTensorMapEncodeTiled_v12000>(ptr);
    } else {
      cudaGetLastError();
    }
  });
  return fn;
}

bool kv_layout_supported(const DecodeParams& p) {
  return p.k_token_stride > 0 && (p.num_heads_kv == 1 || p.k_head_stride > 0) &&
         (p.num_blocks == 1 || p.k_block_stride > 0);
}

bool hopper_kernel_available() {
  cudaFuncAttributes attr{};
  const cudaError_t err =
      cudaFuncGetAttributes(&attr, hopper_decode_kernel<__nv_bfloat16, NextScores::kSplit>);
  if (err != cudaSuccess) {
    cudaGetLastError();
    return false;
  }
  // sm_90a machine code, not a JIT of the compute_80 PTX (whose kernel body is empty).
  return attr.binaryVersion >= 90 && attr.ptxVersion >= 90;
}

}  // namespace flash_mla::sm90
