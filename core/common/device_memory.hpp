#pragma once
// Peak memory of the CUDA caching allocator, for timing lines and benchmarks (0 on CPU-only builds).
#include <cstdint>

namespace mechscope {

/// Peak bytes allocated by LibTorch on CUDA device `index` since the last reset; 0 without CUDA.
int64_t cudaPeakAllocatedBytes(int index = 0);

/// Bytes this process can still allocate on CUDA device `index`: the driver's free memory plus what
/// LibTorch's caching allocator holds but does not use. -1 when unknown (no CUDA runtime in this build).
int64_t cudaAvailableBytes(int index = 0);

/// Number of visible CUDA devices: 0 without CUDA (or when this build cannot ask, 1 if any is there).
int cudaDeviceCount();

/// Start a new peak-memory window on CUDA device `index` (no-op without CUDA).
void resetCudaPeak(int index = 0);

}  // namespace mechscope
