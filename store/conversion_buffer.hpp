#pragma once
// ConversionBuffer: one reused, page-aligned buffer that a cache writer converts hook tensors into
// (fp32 → fp16 or bf16) before writing them. Converting into a fresh tensor each time cost the writer
// thread as much in page faults (fresh zero-filled huge pages) as in the conversion itself (perf, gpt2-small
// 1,024 tokens, `--cache-dtype fp16`: 0.18 s of 0.54 s). fp32 → fp16 of a contiguous tensor uses the F16C
// instructions where the CPU has them (bit-identical to LibTorch's conversion, NaNs included); everything
// else converts with LibTorch into the buffer. The buffer grows to the largest tensor converted, up to a cap;
// larger tensors are converted into a fresh tensor as before (toStorage). Growing keeps the pages already
// touched (mremap).
#include <cstddef>
#include <mutex>

#include "core/common/tensor.hpp"
#include "store/storage_dtype.hpp"

namespace mechscope::store {

/// Reused memory for storage-dtype conversions (thread-safe: one conversion at a time).
class ConversionBuffer {
 public:
  /// The buffer never grows beyond `capBytes` (default 128 MiB: GPT-2's fp16 logits at 1,024 tokens fit).
  explicit ConversionBuffer(std::size_t capBytes = std::size_t{128} << 20);
  ConversionBuffer(const ConversionBuffer&) = delete;
  ConversionBuffer& operator=(const ConversionBuffer&) = delete;
  ~ConversionBuffer();

  /// A converted tensor and, when it lives in the buffer, the lock that keeps the buffer its own: use the
  /// tensor (write it) before this goes.
  struct Converted {
    at::Tensor tensor;                 ///< as toStorage(t, dtype) would give it
    std::unique_lock<std::mutex> hold;  ///< owns the buffer while `tensor` aliases it
  };
  /// toStorage(t, dtype), into the buffer when that is a conversion of a CPU float tensor to fp16/bf16
  /// that fits the cap; otherwise exactly toStorage (no copy when nothing needs converting).
  Converted convert(const at::Tensor& t, StorageDtype dtype);

  /// Bytes the buffer holds now (0 until the first conversion into it).
  [[nodiscard]] std::size_t capacity() const;

 private:
  void reserve(std::size_t bytes);  // caller holds m_mutex

  const std::size_t m_cap;
  mutable std::mutex m_mutex;
  void* m_data = nullptr;
  std::size_t m_bytes = 0;
};

/// The process's buffer, shared by every cache writer (one conversion at a time): kept between caches, since
/// on the VMs of docs/benchmarks.md fresh pages cost ≈ 0.5 GB/s to fault in (a per-writer buffer cost 0.2 s per
/// GPT-2 fp16 cache). Holds at most its cap (128 MiB) once a cache was written as fp16/bf16; none otherwise.
ConversionBuffer& sharedConversionBuffer();

/// fp32 → IEEE fp16 bits of `n` contiguous floats, as c10::Half does it (F16C when the CPU has it).
void floatToHalf(const float* src, uint16_t* dst, std::size_t n);

}  // namespace mechscope::store
