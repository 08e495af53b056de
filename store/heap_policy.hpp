#pragma once
// Streaming needs freed activations to go back to the OS. glibc raises its mmap threshold dynamically (up to
// 32 MiB) after a large free; later multi-MiB tensors then come from the heap, where libhdf5's small metadata
// allocations split the holes they leave, so the heap grows by about a layer's worth per layer (measured:
// +68 MiB per layer at pos 2048, d_model 512). Fixing the threshold keeps large buffers on mmap: RSS stays flat.
#include <cstddef>

namespace mechscope::store {

/// Bytes of freed large tensors kept for reuse while streaming (store/recycling_allocator.hpp).
inline constexpr std::size_t kRecycleCapBytes = std::size_t{512} << 20;

/// Makes glibc serve allocations ≥ `threshold` bytes with mmap (returned to the OS on free; a no-op off glibc
/// or when the user set MALLOC_MMAP_THRESHOLD_) and installs the recycling CPU allocator, so LibTorch's
/// large tensors reuse up to kRecycleCapBytes of warm blocks instead of fresh zero-filled pages.
/// Process-wide, applied once. CacheWriter calls it.
void boundHeapGrowthForStreaming(std::size_t threshold = std::size_t{1} << 20);

}  // namespace mechscope::store
