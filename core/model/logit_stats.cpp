#include "core/model/logit_stats.hpp"

#include <ATen/ATen.h>
#include <fmt/format.h>

#include <stdexcept>

#include "core/common/env.hpp"

#ifdef MECHSCOPE_WITH_CUDA_KERNELS
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <cuda_runtime_api.h>

#include "core/model/logit_stats_launch.hpp"
#endif

namespace mechscope {

std::optional<LogitStats> logitStatsOnDevice(const at::Tensor& logits, const at::Tensor& target) {
#ifndef MECHSCOPE_WITH_CUDA_KERNELS
  (void)logits, (void)target;
  return std::nullopt;
#else
  if (switchedOff("MECHSCOPE_LOGIT_KERNEL") || !logits.is_cuda() || logits.dim() != 2 || logits.stride(1) != 1) return std::nullopt;
  if (logits.scalar_type() != at::kBFloat16 && logits.scalar_type() != at::kHalf) return std::nullopt;
  if (target.dim() != 1 || target.size(0) != logits.size(0)) return std::nullopt;
  const c10::cuda::CUDAGuard guard(logits.device());
  const at::Tensor t = target.to(logits.device(), at::kLong).contiguous();  // [rows]
  LogitStats out{at::empty({logits.size(0)}, logits.options().dtype(at::kFloat)), at::empty({logits.size(0)}, logits.options().dtype(at::kFloat))};
  model_kernels::LogitStatsArgs a;
  a.logits = logits.data_ptr();
  a.target = t.data_ptr<int64_t>();
  a.entropy = out.entropy.data_ptr<float>();
  a.logProb = out.logProb.data_ptr<float>();
  a.rows = logits.size(0);
  a.vocab = logits.size(1);
  a.rowStride = logits.stride(0);
  a.half = logits.scalar_type() == at::kHalf;
  const int err = model_kernels::launchLogitStats(a, c10::cuda::getCurrentCUDAStream(logits.device().index()).stream());
  if (err != 0) throw std::runtime_error(fmt::format("logit-statistics kernel: launch failed ({})", cudaGetErrorString(static_cast<cudaError_t>(err))));
  return out;
#endif
}

}  // namespace mechscope
