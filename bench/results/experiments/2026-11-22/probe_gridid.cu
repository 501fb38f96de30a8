#include <cstdio>
#include <cstdint>
#include <cuda_runtime.h>
#define CK(x) do { cudaError_t e = (x); if (e != cudaSuccess) { printf("ERR %s line %d: %s\n", #x, __LINE__, cudaGetErrorString(e)); return 1; } } while (0)
__global__ void k(unsigned long long* out, int slot) {
  unsigned long long g; asm volatile("mov.u64 %0, %%gridid;" : "=l"(g));
  if (threadIdx.x == 0) {
    if (blockIdx.x == 0) out[slot] = g;
    else if (g != out[slot]) atomicAdd(out + 255, 1ull);  // differs within a grid (racy first write, only a hint)
  }
}
int main() {
  unsigned long long* d; CK(cudaMalloc(&d, 256 * 8)); CK(cudaMemset(d, 0, 256 * 8));
  cudaStream_t s1, s2; CK(cudaStreamCreate(&s1)); CK(cudaStreamCreate(&s2));
  int slot = 0;
  for (int i = 0; i < 3; ++i) k<<<132, 128, 0, s1>>>(d, slot++);
  k<<<132, 128, 0, s2>>>(d, slot++); k<<<132, 128, 0, s1>>>(d, slot++);
  // PDL launches
  for (int i = 0; i < 2; ++i) {
    cudaLaunchConfig_t cfg = {}; cfg.gridDim = 132; cfg.blockDim = 128; cfg.stream = s1;
    cudaLaunchAttribute a; a.id = cudaLaunchAttributeProgrammaticStreamSerialization; a.val.programmaticStreamSerializationAllowed = 1;
    cfg.attrs = &a; cfg.numAttrs = 1; CK(cudaLaunchKernelEx(&cfg, k, d, slot++));
  }
  CK(cudaDeviceSynchronize());
  // graph with two launches, replayed 3 times; each replay writes the same slots, so read after each
  cudaGraph_t g; cudaGraphExec_t ge;
  CK(cudaStreamBeginCapture(s1, cudaStreamCaptureModeGlobal));
  k<<<132, 128, 0, s1>>>(d, 100); k<<<132, 128, 0, s1>>>(d, 101);
  CK(cudaStreamEndCapture(s1, &g)); CK(cudaGraphInstantiate(&ge, g, 0));
  unsigned long long h[256];
  for (int r = 0; r < 3; ++r) {
    CK(cudaGraphLaunch(ge, s1)); CK(cudaStreamSynchronize(s1));
    CK(cudaMemcpy(h, d, sizeof h, cudaMemcpyDeviceToHost));
    printf("graph replay %d: %llu %llu\n", r, h[100], h[101]);
  }
  CK(cudaMemcpy(h, d, sizeof h, cudaMemcpyDeviceToHost));
  for (int i = 0; i < slot; ++i) printf("launch %d: %llu\n", i, h[i]);
  printf("in-grid mismatches (racy hint): %llu\n", h[255]);
  return 0;
}
