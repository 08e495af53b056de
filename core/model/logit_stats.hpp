#pragma once
// Per-row softmax statistics of logits from the CUDA kernel in logit_stats_kernel.cu: nullopt where it does not apply,
// and the caller takes its LibTorch ops.
#include <optional>

#include "core/common/tensor.hpp"

namespace mechscope {

/// A logit-statistics kernel's outputs.
struct LogitStats {
  at::Tensor entropy;  ///< [rows] fp32: −Σ p log p of softmax(row), nats
  at::Tensor logProb;  ///< [rows] fp32: log softmax(row)[target]
};

/// Entropy and target log-probability of each row of `logits` [rows, vocab] (bf16 or fp16, CUDA) in one read, sums in
/// fp32; `target` [rows] int64 on the same device. nullopt without the CUDA kernels in this build, on the CPU, for
/// other dtypes, or with MECHSCOPE_LOGIT_KERNEL=0.
std::optional<LogitStats> logitStatsOnDevice(const at::Tensor& logits, const at::Tensor& target);

}  // namespace mechscope
