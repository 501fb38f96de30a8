// exp95 host model: line vs chain schedule (host twin) on seeded batches: split pieces, segments, largest
// part load. Build from the repository root: g++ -std=c++17 -O2 -Isrc -Iinclude -I$CUDA_HOME/include \
//   exp95_host_model.cpp src/scheduler/metadata_host.cpp
#include <cstdio>
#include <random>
#include <vector>
#include <algorithm>
#include "scheduler/metadata.h"
#include "scheduler/chain.h"
#include "scheduler/schedule.h"
using namespace flash_mla;
struct R { int pieces, maxload, segs; bool chain; };
R run(const std::vector<int>& L, int rows, int P, bool allow) {
  int b = L.size();
  std::vector<int32_t> md(P * 8), ns(b + 1);
  detail::compute_metadata_host(L.data(), b, rows, P, md.data(), ns.data(), allow);
  bool chain = sched::is_chain(md.data());
  int V = sched::fixed_overhead_blocks(rows);
  R r{0, 0, 0, chain};
  for (int p = 0; p < P; ++p) {
    const int32_t* rec = &md[p * 8];
    int bp = rec[0], bb = rec[1], ep = rec[2], eb = rec[3];
    if (bp == ep && bb == eb) continue;
    int load = 0;
    for (int x = bp; x <= ep && x < b; ++x) {
      int s = chain ? sched::chain_batch(md.data(), P, x) : x;
      int nb = sched::num_page_blocks(L[s]);
      int j0 = x == bp ? bb : 0, j1 = std::min(x == ep ? eb : nb, nb);
      if (j0 >= j1) continue;
      load += j1 - j0 + V; r.segs++;
      if (ns[s + 1] > ns[s]) r.pieces++;
    }
    r.maxload = std::max(r.maxload, load);
  }
  return r;
}
int main() {
  struct C { int rows, P, b, sk; };
  C cs[] = {{256,33,128,4096},{256,33,128,8192},{256,33,128,16384},{256,33,128,32768},{256,33,96,4096},
            {128,66,200,4096},{128,66,256,4096},{128,66,256,8192},{64,132,256,4096},{64,132,384,4096},{64,132,511,4096},
            {64,132,128,4096},{128,66,128,4096}};
  for (auto c : cs) {
    for (unsigned seed : {1u, 2u, 3u}) {
      std::mt19937 rng(seed);
      std::normal_distribution<double> nd(c.sk, c.sk / 2.0);
      std::vector<int> L(c.b);
      for (auto& l : L) l = std::max(0, (int)nd(rng));
      long tot = 0; for (int l : L) tot += sched::num_page_blocks(l);
      R a = run(L, c.rows, c.P, false), k = run(L, c.rows, c.P, true);
      printf("rows %3d P %3d b %3d sk %5d seed %u: pages/part %.1f | line pieces %3d segs %3d max %4d | chain(%d) pieces %3d segs %3d max %4d\n",
             c.rows, c.P, c.b, c.sk, seed, (double)tot / c.P, a.pieces, a.segs, a.maxload, k.chain, k.pieces, k.segs, k.maxload);
    }
  }
  // Equal lengths that the line schedule cuts. At d8bf4a5 the chain fill ran here and cut the
  // same pieces at the same loads (62 against 64 at 256 rows / 16384); since 357afe7 use_chain
  // declines equal page counts, so both columns are the line schedule.
  C eq[] = {{128,66,128,32768},{256,33,128,16384},{256,33,128,32768}};
  for (auto c : eq) {
    std::vector<int> L(c.b, c.sk);
    R a = run(L, c.rows, c.P, false), k = run(L, c.rows, c.P, true);
    printf("rows %3d P %3d b %3d sk %5d equal: line pieces %3d segs %3d max %4d | chain(%d) pieces %3d segs %3d max %4d\n",
           c.rows, c.P, c.b, c.sk, a.pieces, a.segs, a.maxload, k.chain, k.pieces, k.segs, k.maxload);
  }
}
