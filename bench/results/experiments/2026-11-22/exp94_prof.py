import sys
s = open('src/scheduler/metadata_kernel.cu').read()
s = s.replace('namespace flash_mla::detail {', '__device__ long long g_marks[8];\nnamespace flash_mla::detail {', 1)
def mark(anchor, i, after=True):
    global s
    assert anchor in s, anchor
    ins = f'  if (threadIdx.x == 0) g_marks[{i}] = clock64();\n'
    s = s.replace(anchor, anchor + ins if after else ins + anchor, 1)
mark('  const int tid = threadIdx.x;\n  const int mine = tid < batch', 0, after=False)
mark('  const int warp = tid / 32, lane = tid % 32;\n', 1)
mark('  if (tid == 0) sh.pick = sched::chain_pick(sh.stats, num_parts);\n', 2, after=False)
mark('  return true;\n}', 3, after=False)
s += r'''
#include <cstdio>
#include <random>
#include <vector>
int main() {
  using namespace flash_mla;
  for (int rows : {16, 64, 128}) for (int sk : {4096, 32768}) {
    const int batch = 128, parts = rows == 128 ? 66 : 132;
    std::mt19937 rng(sk + rows);
    std::normal_distribution<double> nd(sk, sk / 2.0);
    std::vector<int32_t> len(batch);
    for (auto& l : len) l = std::max(0, (int)nd(rng));
    int32_t *d_len, *d_meta, *d_splits;
    cudaMalloc(&d_len, batch * 4); cudaMalloc(&d_meta, parts * 32); cudaMalloc(&d_splits, (batch + 1) * 4);
    cudaMemcpy(d_len, len.data(), batch * 4, cudaMemcpyHostToDevice);
    cudaEvent_t a, b; cudaEventCreate(&a); cudaEventCreate(&b);
    for (int i = 0; i < 5; ++i) detail::launch_metadata_kernel(d_len, batch, rows, parts, d_meta, d_splits, 0);
    cudaEventRecord(a);
    for (int i = 0; i < 50; ++i) detail::launch_metadata_kernel(d_len, batch, rows, parts, d_meta, d_splits, 0);
    cudaEventRecord(b); cudaEventSynchronize(b);
    float ms; cudaEventElapsedTime(&ms, a, b);
    long long m[8] = {0}; cudaMemcpyFromSymbol(m, g_marks, sizeof(m));
    std::printf("rows %3d sk %6d: %.1f us/call; cycles sort+table %lld fill %lld records %lld (err %s)\n", rows, sk, ms * 1000 / 50,
                m[1] - m[0], m[2] - m[1], m[3] - m[2], cudaGetErrorString(cudaGetLastError()));
    cudaMemset(g_marks, 0, 0);
    long long z[8] = {0}; cudaMemcpyToSymbol(g_marks, z, sizeof(z));
  }
}
'''
s = s.replace('  if (warp < sched::kChainCandidates) {', '  if (warp >= NCAND && warp < sched::kChainCandidates && lane == 0) sh.stats[warp] = sched::ChainStats{1 << 30, 0, 0};\n  if (warp < NCAND) {', 1)
open('exp/prof/mk.cu', 'w').write(s)
