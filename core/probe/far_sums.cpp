#include "core/probe/far_sums.hpp"

#include <ATen/ATen.h>
#include <fmt/format.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <stdexcept>

#include "core/common/env.hpp"

#ifdef MECHSCOPE_WITH_PROBE_KERNELS
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <cuda_runtime_api.h>

#include "core/probe/far_sums_launch.hpp"
#endif

namespace mechscope::probe_detail {

bool farSumsKernelBuilt() {
#ifdef MECHSCOPE_WITH_PROBE_KERNELS
  return true;
#else
  return false;
#endif
}

#ifdef MECHSCOPE_WITH_PROBE_KERNELS
namespace {

/// Rows and heads 16-byte aligned with contiguous head dims: what the kernel's cp.async and fragment loads need.
bool kernelLayout(const at::Tensor& x) {
  return x.stride(2) == 1 && x.stride(0) % 8 == 0 && x.stride(1) % 8 == 0 && reinterpret_cast<uintptr_t>(x.data_ptr()) % 16 == 0;
}

/// Compute capability ≥ 8.0 (bf16 mma.sync), asked once per device.
bool tensorCoresFor(const at::Device& device) {
  int major = 0;
  if (cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device.index()) != cudaSuccess) {
    (void)cudaGetLastError();
    return false;
  }
  return major >= 8;
}

}  // namespace
#endif

std::optional<FarSums> farSumsOnDevice(const at::Tensor& q, const at::Tensor& k, const at::Tensor& lse, double scale, int64_t shift,
                                       int64_t rowStart) {
#ifndef MECHSCOPE_WITH_PROBE_KERNELS
  (void)q, (void)k, (void)lse, (void)scale, (void)shift, (void)rowStart;
  return std::nullopt;
#else
  if (switchedOff("MECHSCOPE_PROBE_KERNEL") || !q.is_cuda() || q.dim() != 3 || k.dim() != 3) return std::nullopt;
  const auto dt = q.scalar_type();
  if ((dt != at::kBFloat16 && dt != at::kHalf) || k.scalar_type() != dt) return std::nullopt;
  const int64_t n = q.size(0), heads = q.size(1), kvHeads = k.size(1), d = q.size(2);
  if (!probe_kernels::farSumsHeadSizeSupported(d) || k.size(2) != d || k.size(0) != n || kvHeads == 0 || heads % kvHeads != 0)
    return std::nullopt;
  if (shift < 0 || !tensorCoresFor(q.device())) return std::nullopt;
  const c10::cuda::CUDAGuard guard(q.device());
  const at::Tensor qc = kernelLayout(q) ? q : q.contiguous();  // [n, head, d]
  const at::Tensor kc = kernelLayout(k) ? k : k.contiguous();  // [n, kv_head, d]
  const at::Tensor l = lse.to(q.device(), at::kFloat).contiguous();  // [head, n]
  FarSums out{at::zeros({heads, n}, q.options().dtype(at::kDouble)), at::zeros({heads, n}, q.options().dtype(at::kDouble))};
  probe_kernels::FarSumsArgs a;
  a.q = qc.data_ptr();
  a.k = kc.data_ptr();
  a.lse = l.data_ptr<float>();
  a.rowMass = out.rowMass.data_ptr<double>();
  a.colMass = out.colMass.data_ptr<double>();
  a.n = n;
  a.qRowStride = qc.stride(0);
  a.qHeadStride = qc.stride(1);
  a.kRowStride = kc.stride(0);
  a.kHeadStride = kc.stride(1);
  a.shift = shift;
  a.rowStart = std::max<int64_t>(rowStart, 0);
  a.heads = static_cast<int>(heads);
  a.group = static_cast<int>(heads / kvHeads);
  a.dHead = static_cast<int>(d);
  a.scale = static_cast<float>(scale);
  a.half = dt == at::kHalf;
  if (const char* shape = std::getenv("MECHSCOPE_FAR_SUMS_SHAPE")) a.shape = std::atoi(shape);  // timing the block shapes
  const int err = probe_kernels::launchFarSums(a, c10::cuda::getCurrentCUDAStream(q.device().index()).stream());
  if (err != 0) throw std::runtime_error(fmt::format("probe far-sums kernel: launch failed ({})", probe_kernels::farSumsErrorString(err)));
  return out;
#endif
}

}  // namespace mechscope::probe_detail
