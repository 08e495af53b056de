#include "store/heap_policy.hpp"

#include "store/recycling_allocator.hpp"

#include <cstdlib>
#include <mutex>

#if defined(__GLIBC__)
#include <malloc.h>
#endif

namespace mechscope::store {

void boundHeapGrowthForStreaming(std::size_t threshold) {
  static std::once_flag once;
  std::call_once(once, [threshold] {
#if defined(__GLIBC__)
    if (std::getenv("MALLOC_MMAP_THRESHOLD_") == nullptr) mallopt(M_MMAP_THRESHOLD, static_cast<int>(threshold));
#else
    (void)threshold;
#endif
    installRecyclingCpuAllocator(kRecycleCapBytes);
  });
}

}  // namespace mechscope::store
