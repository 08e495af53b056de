#include "core/common/device_memory.hpp"

#include <algorithm>

#include <ATen/Context.h>

#if defined(MECHSCOPE_WITH_CUDA) && __has_include(<c10/cuda/CUDACachingAllocator.h>) && __has_include(<cuda_runtime_api.h>)
#include <c10/cuda/CUDACachingAllocator.h>
#include <c10/cuda/CUDAFunctions.h>
#define MECHSCOPE_CUDA_STATS 1
#if defined(MECHSCOPE_WITH_CUDART)
#include <cuda_runtime_api.h>
#endif
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

int64_t cudaAvailableBytes(int index) {
#if defined(MECHSCOPE_CUDA_STATS) && defined(MECHSCOPE_WITH_CUDART)
  if (index >= static_cast<int>(c10::cuda::device_count())) return -1;
  int previous = 0;
  if (cudaGetDevice(&previous) != cudaSuccess) return -1;
  size_t freeBytes = 0, totalBytes = 0;
  const bool ok = cudaSetDevice(index) == cudaSuccess && cudaMemGetInfo(&freeBytes, &totalBytes) == cudaSuccess;
  cudaSetDevice(previous);
  if (!ok) return -1;
  const auto stats = c10::cuda::CUDACachingAllocator::getDeviceStats(index);
  const int64_t cachedUnused = stats.reserved_bytes[0].current - stats.allocated_bytes[0].current;
  return static_cast<int64_t>(freeBytes) + std::max<int64_t>(0, cachedUnused);
#else
  (void)index;
  return -1;
#endif
}

int cudaDeviceCount() {
#ifdef MECHSCOPE_CUDA_STATS
  return static_cast<int>(c10::cuda::device_count());
#else
  return at::hasCUDA() ? 1 : 0;
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
