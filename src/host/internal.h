// Host-side pieces shared by api.cpp, validate.cpp and dispatch.cu.
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdio>
#include <string>
#include <type_traits>

#include "flash_mla/flash_mla.h"
#include "kernels/params.h"

namespace flash_mla::detail {

// The most scheduling parts a call may have: the wide Hopper and the portable kernel put parts
// on gridDim.y, which CUDA limits to 65535 (their m-blocks go first, on x; the launches in
// kernels/sm90/decode_launch.cuh and kernels/sm80/decode_launch.cuh).
inline constexpr int kMaxNumSmParts = 65535;

// Values as message text. No iostreams: the library may be linked into a shared object with a
// static libstdc++ (as one PyTorch environment's LDFLAGS did), where GCC 13's iostream/locale
// initialisation is not run and an ostringstream crashes; std::to_string and snprintf need none.
inline std::string to_text(const std::string& s) { return s; }
inline std::string to_text(const char* s) { return s; }
inline std::string to_text(double v) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%g", v);
  return buf;
}
template <class T, std::enable_if_t<std::is_integral_v<T>, int> = 0>
std::string to_text(T v) {
  return std::to_string(v);
}

// "<field>: expected <what>, got <value>" -- the one shape of every argument error.
template <class T>
Status invalid(const char* field, const std::string& expected, const T& got) {
  return Status(StatusCode::kInvalidArgument,
                std::string(field) + ": expected " + expected + ", got " + to_text(got));
}

inline Status cuda_failure(const char* what, cudaError_t err) {
  cudaGetLastError();  // reported here: a non-sticky error must not fail the next launch's check
  return Status(StatusCode::kCudaError,
                std::string(what) + ": " + cudaGetErrorName(err) + " (" + cudaGetErrorString(err) + ")");
}

// The current device, read once per device and cached.
struct DeviceInfo {
  int device = -1;
  int major = 0, minor = 0;
  int num_sms = 0;
  size_t smem_optin = 0;  // largest dynamic shared memory one CTA may opt into
  bool hopper = false;    // sm_90 with the Hopper kernel's sm_90a code in this build
  int combine_adaptive_wave = 0;  // CTAs of the combine kernel for few sequences resident at once
};
Status current_device_info(DeviceInfo* info);

// The chosen kernel's configuration for M query rows per KV head on a device.
struct KernelPlan {
  bool hopper = false;  // the Hopper kernel; otherwise the portable one
  int narrow_rows = 0;  // Hopper: the narrow kernel's rows (sm90::kNarrowRows); 0: the wide one
  int row_groups = 1;   // portable: 16 query rows each
  int block_m = 16;
  int m_blocks = 1;
  int ctas_per_sm = 1;
  int stages = 2;       // KV tiles in shared memory
};
Status plan_portable(const DeviceInfo& dev, int rows_per_kv, KernelPlan* plan);
// The plan of the kernel `kernel` resolves to on this device (kAuto: the fastest available).
Status plan_kernel(const DeviceInfo& dev, int rows_per_kv, KernelChoice kernel,
                   KernelPlan* plan);

// Split-KV partials: 2 slots per part bound the pieces (schedule.h).
int num_workspace_slots(int num_sm_parts);
size_t workspace_bytes(int rows_per_kv, int num_heads_kv, int num_sm_parts);
void workspace_layout(void* workspace, int rows_per_kv, int num_heads_kv, int num_sm_parts,
                      float** o_accum, float** lse_accum);

// Kernel launches (dispatch.cu).
cudaError_t launch_portable(DType dtype, const DecodeParams& params, const KernelPlan& plan,
                            cudaStream_t stream);
// `dependent`: a programmatic dependent launch after a Hopper split kernel; `dev` gives
// combine_adaptive_wave and smem_optin.
cudaError_t launch_combine(DType dtype, const DecodeParams& params, const DeviceInfo& dev,
                           bool dependent, cudaStream_t stream);
cudaError_t launch_hopper(DType dtype, const DecodeParams& params, const KernelPlan& plan,
                          cudaStream_t stream);

// Scalar checks of a problem (validate.cpp), shared by decode() and get_workspace_size().
Status validate_problem(const DecodeProblem& problem);

// 1 <= num_sm_parts <= kMaxNumSmParts (validate.cpp), shared by decode(), get_workspace_size()
// and compute_metadata().
Status validate_num_sm_parts(int num_sm_parts);

}  // namespace flash_mla::detail
