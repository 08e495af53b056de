#include "core/common/device_memory.hpp"

#if defined(MECHSCOPE_WITH_CUDA) && __has_include(<c10/cuda/CUDACachingAllocator.h>) && __has_include(<cuda_runtime_api.h>)
#include <c10/cuda/CUDACachingAllocator.h>
#include <c10/cuda/CUDAFunctions.h>
#define MECHSCOPE_CUDA_STATS 1
#endif

namespace mechscope {

int64_t cudaPeakAllocatedBytes(int index) {
#ifdef MECHSCOPE_CUDA_STATS
  if (index >= static_cast<int>(c10::cuda::device_count())) return 0;
  return c10::cuda::CUDACachingAllocator::getDeviceStats(index).allocated_bytes[0].peak;
#else
  (void)index;
  return 0;
#endif
}

void resetCudaPeak(int index) {
#ifdef MECHSCOPE_CUDA_STATS
  if (index >= static_cast<int>(c10::cuda::device_count())) return;
  c10::cuda::CUDACachingAllocator::resetPeakStats(index);
#else
  (void)index;
#endif
}

}  // namespace mechscope
