// Thin wrappers over the Ampere-class PTX instructions the portable kernel is built from.
// Each names the PTX ISA section (docs.nvidia.com/cuda/parallel-thread-execution) defining it.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>

namespace flash_mla::ptx {

__device__ __forceinline__ uint32_t smem_addr(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}

// 2^x on the special-function unit, subnormal results flushed to zero (PTX ISA: "Floating
// Point Instructions: ex2"): one MUFU.EX2, where exp2f adds a range test and two scalings for
// subnormal results. In a softmax those are the weights below 2^-126 of the row maximum, which
// no bf16/fp16 output can resolve. ex2(-inf) = +0, so masked scores give P = 0.
__device__ __forceinline__ float exp2_approx(float x) {
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;\n" : "=f"(y) : "f"(x));
  return y;
}

// Programmatic dependent launch (PTX ISA: "Parallel Synchronization and Communication
// Instructions: griddepcontrol"; sm_90 and later, nothing on older GPUs). griddep_wait: no read
// of what the previous grid in the stream writes may come before it; it returns once that grid
// has completed and its writes are visible (at once when this grid was launched without the
// programmatic-serialization attribute). griddep_launch_dependents: the next grid in the stream,
// if launched with that attribute, may be scheduled once every CTA of this one has issued it or
// exited, so its launch overlaps this grid's tail.
__device__ __forceinline__ void griddep_wait() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.wait;\n" ::: "memory");
#endif
}
__device__ __forceinline__ void griddep_launch_dependents() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.launch_dependents;\n" ::: "memory");
#endif
}

// Drops one 128-byte line from L2 without writing it back to memory (PTX ISA: "Data Movement
// and Conversion Instructions: discard"; sm_80 and later). The line's contents become
// indeterminate: for scratch that nothing reads again. `line` must be 128-byte aligned.
__device__ __forceinline__ void discard_l2_line(const void* line) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  asm volatile("discard.global.L2 [%0], 128;\n" :: "l"(line) : "memory");
#endif
}

// 16-byte global->shared copy that bypasses L1 (PTX ISA: "Data Movement and Conversion Instructions: cp.async"). src_bytes = 0 fills the
// destination with zeros without reading the source: used for KV tokens past the sequence and
// Q rows past M, so padding never brings NaN into the tile.
__device__ __forceinline__ void cp_async_16(void* smem, const void* gmem, bool valid) {
  const int src_bytes = valid ? 16 : 0;
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n"
               :: "r"(smem_addr(smem)), "l"(gmem), "r"(src_bytes) : "memory");
}

// PTX ISA: "cp.async.commit_group", "cp.async.wait_group".
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::: "memory"); }

template <int kPending>
__device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;\n" :: "n"(kPending) : "memory");
}

// wait_group takes an immediate: dispatch a run-time count (at most 4) onto the template.
__device__ __forceinline__ void cp_async_wait_dynamic(int pending) {
  switch (pending) {
    case 0: cp_async_wait<0>(); break;
    case 1: cp_async_wait<1>(); break;
    case 2: cp_async_wait<2>(); break;
    case 3: cp_async_wait<3>(); break;
    default: cp_async_wait<4>(); break;
  }
}

// Four 8x8 b16 matrices from shared memory (PTX ISA: "Warp-level matrix load instruction: ldmatrix"). Lane l supplies the row
// address of row l % 8 of matrix l / 8; register i receives matrix i.
__device__ __forceinline__ void ldmatrix_x4(uint32_t (&r)[4], const void* smem) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3]) : "r"(smem_addr(smem)));
}

// Same, transposed on load: used for V, stored token-major but consumed as the k-major B operand.
__device__ __forceinline__ void ldmatrix_x4_trans(uint32_t (&r)[4], const void* smem) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3]) : "r"(smem_addr(smem)));
}

// D = A * B + D, m16n8k16, fp32 accumulators (PTX ISA: "Warp-level matrix multiply-accumulate
// instructions: mma"; layouts in "Matrix Fragments for mma.m16n8k16 with floating point type").
template <class Element>
__device__ __forceinline__ void mma_16816(float (&d)[4], const uint32_t (&a)[4], uint32_t b0,
                                          uint32_t b1);

template <>
__device__ __forceinline__ void mma_16816<__nv_bfloat16>(float (&d)[4], const uint32_t (&a)[4],
                                                         uint32_t b0, uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, "
      "{%8, %9}, {%0, %1, %2, %3};\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

template <>
__device__ __forceinline__ void mma_16816<__half>(float (&d)[4], const uint32_t (&a)[4],
                                                  uint32_t b0, uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, "
      "{%8, %9}, {%0, %1, %2, %3};\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

// Named barrier over `threads` threads (PTX ISA: "Parallel Synchronization and Communication
// Instructions: bar, barrier"): lets one row group of warps
// synchronise without stalling the others.
__device__ __forceinline__ void named_barrier_sync(int id, int threads) {
  asm volatile("bar.sync %0, %1;\n" :: "r"(id), "r"(threads) : "memory");
}

// The same with the id and count as immediates, for barriers whose id is known at compile
// time: ptxas then knows which barrier each bar.sync uses.
template <int kId, int kThreads>
__device__ __forceinline__ void named_barrier_sync() {
  asm volatile("bar.sync %0, %1;\n" :: "n"(kId), "n"(kThreads) : "memory");
}

// Arrives on a named barrier without waiting: the signalling side of a producer/consumer pair
// whose consumers bar.sync with the same thread count (PTX ISA: "bar, barrier": bar.arrive).
__device__ __forceinline__ void named_barrier_arrive(int id, int threads) {
  asm volatile("bar.arrive %0, %1;\n" :: "r"(id), "r"(threads) : "memory");
}

// Two floats -> one packed 16-bit pair (low half = first).
template <class Element>
__device__ __forceinline__ uint32_t pack2(float lo, float hi);

template <>
__device__ __forceinline__ uint32_t pack2<__nv_bfloat16>(float lo, float hi) {
  __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
  return *reinterpret_cast<uint32_t*>(&v);
}

template <>
__device__ __forceinline__ uint32_t pack2<__half>(float lo, float hi) {
  __half2 v = __floats2half2_rn(lo, hi);
  return *reinterpret_cast<uint32_t*>(&v);
}

}  // namespace flash_mla::ptx
