// Dtype and configuration dispatch to the explicitly instantiated kernels.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "host/internal.h"
#include "kernels/common/combine.h"
#include "kernels/sm80/config.h"
#include "kernels/sm80/launch.h"
#include "kernels/sm90/config.h"
#include "kernels/sm90/launch.h"

namespace flash_mla {
namespace sm80 {

size_t portable_decode_smem_bytes(int row_groups, int stages) {
  switch (row_groups) {
    case 1: return PortableConfig<1>::smem_bytes(stages);
    case 2: return PortableConfig<2>::smem_bytes(stages);
    default: return 0;
  }
}

}  // namespace sm80

namespace detail {
namespace {

template <class Element>
cudaError_t launch_portable_typed(const DecodeParams& params, const KernelPlan& plan,
                                  cudaStream_t stream) {
  switch (plan.row_groups) {
    case 1: return sm80::launch_portable_decode<Element, 1>(params, plan.m_blocks, stream);
    case 2: return sm80::launch_portable_decode<Element, 2>(params, plan.m_blocks, stream);
    default: return cudaErrorInvalidConfiguration;
  }
}

}  // namespace

cudaError_t portable_occupancy(int row_groups, int stages, int* ctas_per_sm) {
  // Occupancy does not depend on the dtype: same registers and shared memory.
  switch (row_groups) {
    case 1: return sm80::portable_decode_occupancy<__nv_bfloat16, 1>(stages, ctas_per_sm);
    case 2: return sm80::portable_decode_occupancy<__nv_bfloat16, 2>(stages, ctas_per_sm);
    default: return cudaErrorInvalidConfiguration;
  }
}

cudaError_t launch_portable(DType dtype, const DecodeParams& params, const KernelPlan& plan,
                            cudaStream_t stream) {
  return dtype == DType::kBF16 ? launch_portable_typed<__nv_bfloat16>(params, plan, stream)
                               : launch_portable_typed<__half>(params, plan, stream);
}

cudaError_t launch_hopper(DType dtype, const DecodeParams& params, const KernelPlan& plan,
                          cudaStream_t stream) {
  constexpr int kN = sm90::kNarrowRows;
  if (plan.narrow_rows == kN) {
    return dtype == DType::kBF16 ? sm90::launch_hopper_narrow<__nv_bfloat16, kN>(params, stream)
                                 : sm90::launch_hopper_narrow<__half, kN>(params, stream);
  }
  return dtype == DType::kBF16
             ? sm90::launch_hopper_decode<__nv_bfloat16>(params, plan.m_blocks, stream)
             : sm90::launch_hopper_decode<__half>(params, plan.m_blocks, stream);
}

cudaError_t combine_adaptive_occupancy(int* ctas_per_sm) {
  // Occupancy does not depend on the dtype: same registers and shared memory.
  return combine::adaptive_occupancy<__nv_bfloat16>(ctas_per_sm);
}

cudaError_t launch_combine(DType dtype, const DecodeParams& params, const DeviceInfo& dev,
                           bool dependent, cudaStream_t stream) {
  const int wave = dev.combine_adaptive_wave;
  const size_t optin = dev.smem_optin;
  return dtype == DType::kBF16
             ? combine::launch_combine<__nv_bfloat16>(params, wave, optin, dependent, stream)
             : combine::launch_combine<__half>(params, wave, optin, dependent, stream);
}

}  // namespace detail
}  // namespace flash_mla
