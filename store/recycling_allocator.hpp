#pragma once
// A bounded recycling allocator for LibTorch's large CPU tensors, installed while a cache is streamed
// (store/heap_policy.hpp). With glibc's mmap threshold pinned at 1 MiB every large tensor would be fresh
// pages, zero-filled by the kernel at first touch (on the benchmark VM: the bare GPT-2-small forward +30 %
// even with huge pages). Here freed blocks ≥ 1 MiB are kept, up to a fixed byte cap, and handed out again
// to the next tensor of the same size class: the forward's per-layer shapes repeat, so most large tensors
// reuse warm memory, while the cap keeps the process's footprint flat however long the stream.
#include <cstddef>
#include <cstdint>

namespace mechscope::store {

/// Installs the recycling allocator as LibTorch's CPU allocator (once per process; later calls only
/// return). Blocks of ≥ 1 MiB are mmap'd (huge pages advised) and, when freed, kept for reuse while the
/// kept bytes stay ≤ `capBytes`; smaller ones go to LibTorch's default allocator. Tensors allocated before
/// keep their own deleter. MECHSCOPE_RECYCLE_MIB overrides the cap (0 disables the allocator).
void installRecyclingCpuAllocator(std::size_t capBytes);

/// Counters of the recycling allocator (all 0 when it is not installed).
struct RecyclingStats {
  int64_t reused = 0;       ///< allocations served from kept blocks
  int64_t fresh = 0;        ///< allocations that mapped new memory
  int64_t keptBytes = 0;    ///< bytes kept for reuse now
  int64_t capBytes = 0;     ///< the cap in use
};
/// A snapshot of the counters.
RecyclingStats recyclingStats();

}  // namespace mechscope::store
