// Hopper (sm_90a) PTX the warp-specialised kernel is built from: mbarriers, TMA, wgmma,
// register reallocation, proxy fences. Each wrapper names its PTX ISA section
// (docs.nvidia.com/cuda/parallel-thread-execution).
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>

#include "kernels/common/ptx.h"

namespace flash_mla::ptx {

// ---- mbarrier (PTX ISA: "Parallel Synchronization and Communication Instructions: mbarrier")
__device__ __forceinline__ void mbarrier_init(uint64_t* bar, uint32_t count) {
  asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;\n" :: "r"(smem_addr(bar)), "r"(count));
}

// Makes the initialisations visible to the async proxy (TMA) and other threads
// (PTX ISA: "membar/fence": fence.mbarrier_init).
__device__ __forceinline__ void fence_mbarrier_init() {
  asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
}

__device__ __forceinline__ void mbarrier_arrive(uint64_t* bar) {
  asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];\n" :: "r"(smem_addr(bar)) : "memory");
}

// Arrival that also announces `bytes` of TMA traffic the phase must wait for
// (PTX ISA: "mbarrier.expect_tx", "mbarrier.arrive").
__device__ __forceinline__ void mbarrier_arrive_expect_tx(uint64_t* bar, uint32_t bytes) {
  asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;\n"
               :: "r"(smem_addr(bar)), "r"(bytes) : "memory");
}

// 16 zero bytes at a shared-memory address.
__device__ __forceinline__ void st_shared_zero16(uint32_t addr) {
  asm volatile("st.shared.v4.u32 [%0], {%1, %1, %1, %1};\n" :: "r"(addr), "r"(0) : "memory");
}

// Spins until the phase with the given parity has completed (PTX ISA: "mbarrier.try_wait").
__device__ __forceinline__ void mbarrier_wait(uint64_t* bar, uint32_t parity) {
  asm volatile(
      "{\n.reg .pred done;\n"
      "wait_%=:\n"
      "mbarrier.try_wait.parity.shared::cta.b64 done, [%0], %1;\n"
      "@!done bra wait_%=;\n}\n"
      :: "r"(smem_addr(bar)), "r"(parity) : "memory");
}

// ---- TMA (PTX ISA: "Data Movement and Conversion Instructions: cp.async.bulk.tensor")
// An L2 policy that evicts the streamed KV first (PTX ISA: "createpolicy"): each KV byte is
// read once per (m_block, head) CTA, so it should not push Q, metadata or partials out of L2.
__device__ __forceinline__ uint64_t evict_first_policy() {
  uint64_t policy;
  asm volatile("createpolicy.fractional.L2::evict_first.b64 %0, 1.0;\n" : "=l"(policy));
  return policy;
}

// An L2 policy that keeps lines ahead of evict_first ones: the fp32 partials of split pieces,
// which the combine kernel reads right after the split kernel, while the streamed KV (up to
// several GB per call) passes through L2 marked evict_first.
__device__ __forceinline__ uint64_t evict_last_policy() {
  uint64_t policy;
  asm volatile("createpolicy.fractional.L2::evict_last.b64 %0, 1.0;\n" : "=l"(policy));
  return policy;
}

// A store of an fp32 partial with an L2 cache policy (PTX ISA: "st", `.L2::cache_hint`).
__device__ __forceinline__ void store_with_policy(float* dst, float a, uint64_t policy) {
  asm volatile("st.global.L2::cache_hint.f32 [%0], %1, %2;\n"
               :: "l"(dst), "f"(a), "l"(policy) : "memory");
}

// One box of a 4-d tensor map into shared memory, completing `bytes` on `bar`.
__device__ __forceinline__ void tma_load_4d(void* smem, const void* tensor_map, uint64_t* bar,
                                            int c0, int c1, int c2, int c3, uint64_t policy) {
  asm volatile(
      "cp.async.bulk.tensor.4d.shared::cluster.global.tile.mbarrier::complete_tx::bytes"
      ".L2::cache_hint [%0], [%1, {%2, %3, %4, %5}], [%6], %7;\n"
      :: "r"(smem_addr(smem)), "l"(tensor_map), "r"(c0), "r"(c1), "r"(c2), "r"(c3),
         "r"(smem_addr(bar)), "l"(policy)
      : "memory");
}

// ---- Bulk stores from shared to global memory (PTX ISA: "cp.async.bulk"): `bytes` (a multiple
// of 16, both addresses 16-byte aligned) copied by the TMA unit, in the issuing thread's bulk
// async-group. The source is reusable after `bulk_wait_read`; `bulk_wait` also waits for the
// writes themselves.
__device__ __forceinline__ void bulk_store(void* gmem, const void* smem, uint32_t bytes) {
  asm volatile("cp.async.bulk.global.shared::cta.bulk_group [%0], [%1], %2;\n"
               :: "l"(gmem), "r"(smem_addr(smem)), "r"(bytes) : "memory");
}
__device__ __forceinline__ void bulk_store(void* gmem, const void* smem, uint32_t bytes,
                                           uint64_t policy) {
  asm volatile("cp.async.bulk.global.shared::cta.bulk_group.L2::cache_hint [%0], [%1], %2, %3;\n"
               :: "l"(gmem), "r"(smem_addr(smem)), "r"(bytes), "l"(policy) : "memory");
}
__device__ __forceinline__ void bulk_commit() {
  asm volatile("cp.async.bulk.commit_group;\n" ::: "memory");
}
__device__ __forceinline__ void bulk_wait_read() {
  asm volatile("cp.async.bulk.wait_group.read 0;\n" ::: "memory");
}
__device__ __forceinline__ void bulk_wait() {
  asm volatile("cp.async.bulk.wait_group 0;\n" ::: "memory");
}

__device__ __forceinline__ void prefetch_tensor_map(const void* tensor_map) {
  asm volatile("prefetch.tensormap [%0];\n" :: "l"(tensor_map) : "memory");
}

// Generic-proxy writes to shared memory (Q staged by threads, zeroed KV tails) become visible
// to the async proxy that wgmma reads through (PTX ISA: "membar/fence": fence.proxy.async).
__device__ __forceinline__ void fence_proxy_async_shared() {
  asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
}

// ---- Register reallocation between warpgroups (PTX ISA: "setmaxnreg")
template <int kRegs>
__device__ __forceinline__ void setmaxnreg_inc() {
  asm volatile("setmaxnreg.inc.sync.aligned.u32 %0;\n" :: "n"(kRegs));
}
template <int kRegs>
__device__ __forceinline__ void setmaxnreg_dec() {
  asm volatile("setmaxnreg.dec.sync.aligned.u32 %0;\n" :: "n"(kRegs));
}

// ---- Named barrier reached from different instructions (PTX ISA: "barrier"): bar.sync is
// barrier.sync.aligned, which requires every participating thread to execute the same
// instruction; the Hopper kernel's consumer warpgroups run separately compiled copies of their
// code (one register budget each), so their shared barriers use the form without .aligned.
__device__ __forceinline__ void named_barrier_sync_unaligned(int id, int threads) {
  asm volatile("barrier.sync %0, %1;\n" :: "r"(id), "r"(threads) : "memory");
}

// ---- wgmma (PTX ISA: "Asynchronous Warpgroup Level Matrix Multiply-Accumulate Instructions")
__device__ __forceinline__ void wgmma_fence() {
  asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory");
}
__device__ __forceinline__ void wgmma_commit() {
  asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory");
}
template <int kPending>
__device__ __forceinline__ void wgmma_wait() {
  asm volatile("wgmma.wait_group.sync.aligned %0;\n" :: "n"(kPending) : "memory");
}

// Shared-memory matrix descriptor (PTX ISA: "Matrix Descriptor Format" of wgmma): start
// address, leading- and stride-dimension byte offsets (all >> 4), swizzle mode in bits 62-63.
enum class Swizzle : uint64_t { k128B = 1 };

__device__ __forceinline__ uint64_t smem_descriptor(const void* smem, uint32_t lbo_bytes,
                                                    uint32_t sbo_bytes, Swizzle swizzle) {
  uint64_t desc = 0;
  desc |= static_cast<uint64_t>((smem_addr(smem) & 0x3FFFF) >> 4);
  desc |= static_cast<uint64_t>((lbo_bytes >> 4) & 0x3FFF) << 16;
  desc |= static_cast<uint64_t>((sbo_bytes >> 4) & 0x3FFF) << 32;
  desc |= static_cast<uint64_t>(swizzle) << 62;
  return desc;
}

#include "kernels/sm90/wgmma_ops.inc"

}  // namespace flash_mla::ptx
