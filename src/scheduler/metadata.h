// Scheduling metadata: the device kernel and its host twin (same algorithm, schedule.h).
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

namespace flash_mla::detail {

// Host run of the schedule: metadata [num_parts, 8], num_splits [batch + 1]. Used by tests
// and tools to check the device result and the schedule's properties. rows_per_kv_head sets
// how much wider than balanced a split-free width may be (sched::split_slack). allow_chain =
// false gives the line schedule where the chain one (scheduler/chain.h) would replace it, for
// comparisons.
void compute_metadata_host(const int32_t* cache_seqlens, int batch, int rows_per_kv_head,
                           int num_parts, int32_t* metadata, int32_t* num_splits,
                           bool allow_chain = true);

// One CTA computes the schedule on `stream`; num_splits doubles as scratch for the prefix sums.
cudaError_t launch_metadata_kernel(const int32_t* cache_seqlens, int batch, int rows_per_kv_head,
                                   int num_parts, int32_t* metadata, int32_t* num_splits,
                                   cudaStream_t stream);

}  // namespace flash_mla::detail
