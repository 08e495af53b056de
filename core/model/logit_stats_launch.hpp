// The logit-statistics CUDA kernel's launch interface (logit_stats_kernel.cu): plain pointers, no LibTorch and no CUDA
// headers, shared by nvcc's translation unit and the ATen wrapper (logit_stats.cpp).
#pragma once

#include <cstdint>

namespace mechscope::model_kernels {

/// One call: for each row of bf16/fp16 logits, the softmax's entropy and one token's log-probability.
struct LogitStatsArgs {
  const void* logits = nullptr;  ///< [rows, vocab], rows rowStride elements apart
  const int64_t* target = nullptr;  ///< [rows] the token whose log-probability each row reports
  float* entropy = nullptr;      ///< [rows] out: −Σ p log p (nats)
  float* logProb = nullptr;      ///< [rows] out: log p[target]
  int64_t rows = 0, vocab = 0, rowStride = 0;
  bool half = false;             ///< fp16 logits (else bf16)
};

/// Launches the kernel on `stream` (a cudaStream_t); returns the launch's cudaError_t (0: none).
int launchLogitStats(const LogitStatsArgs& args, void* stream);

}  // namespace mechscope::model_kernels
