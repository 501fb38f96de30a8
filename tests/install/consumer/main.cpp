// Calls the public API the way an application would; needs no GPU (host-side calls only).
#include <flash_mla/flash_mla.h>

#include <cstdio>

int main() {
  flash_mla::DecodeProblem pr;
  pr.batch = 2;
  pr.num_heads_q = 16;
  pr.num_blocks = 8;
  pr.max_blocks_per_seq = 4;
  size_t bytes = 0;
  const flash_mla::Status ok = flash_mla::get_workspace_size(pr, 132, &bytes);
  pr.head_dim = 575;
  const flash_mla::Status bad = flash_mla::get_workspace_size(pr, 132, &bytes);
  std::printf("workspace %zu bytes; rejected: %s\n", bytes, bad.message().c_str());
  return ok.ok() && bytes > 0 && !bad.ok() ? 0 : 1;
}
