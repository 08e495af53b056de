#pragma once
// CpuMemoryMeter: counts the bytes LibTorch allocates on the CPU while it is alive (current and peak),
// by wrapping the CPU allocator. For tests and benchmarks that check memory contracts such as the
// probe's O(tile² + n); install one at a time, from one thread.
#include <cstdint>

namespace mechscope {

/// Measures CPU tensor memory between construction and destruction (or resetPeak()).
class CpuMemoryMeter {
 public:
  /// Installs the counting allocator; allocations made before it are not seen.
  CpuMemoryMeter();
  /// Restores the allocator that was installed before.
  ~CpuMemoryMeter();
  CpuMemoryMeter(const CpuMemoryMeter&) = delete;
  CpuMemoryMeter& operator=(const CpuMemoryMeter&) = delete;

  /// Bytes allocated through the meter and not yet freed (may go negative when older tensors die).
  [[nodiscard]] int64_t currentBytes() const;
  /// Highest currentBytes() since construction or the last resetPeak().
  [[nodiscard]] int64_t peakBytes() const;
  /// Peak above the current level from now on.
  void resetPeak();
};

}  // namespace mechscope
