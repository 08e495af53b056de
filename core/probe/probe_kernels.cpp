#include "core/probe/probe_kernels.hpp"

#include <ATen/ATen.h>
#include <ATen/record_function.h>
#include <fmt/format.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <stdexcept>

#include "core/common/env.hpp"

#ifdef MECHSCOPE_WITH_CUDA_KERNELS
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <cuda_runtime_api.h>

#include "core/probe/far_sums_launch.hpp"
#include "core/probe/near_band_launch.hpp"
#endif

namespace mechscope::probe_detail {

bool probeKernelsBuilt() {
#ifdef MECHSCOPE_WITH_CUDA_KERNELS
  return true;
#else
  return false;
#endif
}

namespace {

constexpr int64_t kNearWidth = 32;  // probe_kernels::kNearBandWidth (one offset per lane)
#ifdef MECHSCOPE_WITH_CUDA_KERNELS
static_assert(kNearWidth == probe_kernels::kNearBandWidth, "the near band is one warp wide");
#endif

/// MECHSCOPE_NEAR_BAND_EMULATE=1: nearBandOnDevice computes the kernel's sums with LibTorch ops on any device, so that
/// the CPU tests run its callers' plan (which bands, which weights) against the materialised pattern.
bool nearBandEmulated() { return envEquals("MECHSCOPE_NEAR_BAND_EMULATE", "1"); }

/// The near-band kernel's contract in fp64 LibTorch ops, one offset at a time (tests only: O(32·n·d) small ops).
NearBand nearBandEmulation(const at::Tensor& q, const at::Tensor& k, const at::Tensor& lse, double scale, int64_t rowStart,
                           const at::Tensor& rowWeights, const at::Tensor& colWeights) {
  RECORD_USER_SCOPE("probe::near_band_emulation");  // apart from the probe's own ops when they are counted
  const int64_t n = q.size(0), heads = q.size(1), m = rowWeights.defined() ? rowWeights.size(0) : 0;
  const auto dopt = q.options().dtype(at::kDouble);
  const at::Tensor qd = q.to(at::kDouble), kd = k.to(at::kDouble).repeat_interleave(heads / k.size(1), 1);  // [n, head, d]
  const at::Tensor l = lse.to(dopt);                                                                      // [head, n]
  const at::Tensor rw = m > 0 ? rowWeights.to(at::kDouble).cpu() : at::Tensor(), cw = colWeights.defined() ? colWeights.to(at::kDouble).cpu() : at::Tensor();
  NearBand out;
  out.rowSums = at::zeros({m, heads, n}, dopt);
  if (cw.defined()) out.colSums = at::zeros({heads, n}, dopt);
  for (int64_t d = 0; d < std::min(kNearWidth, n); ++d) {
    const int64_t i0 = std::max(d, std::max<int64_t>(rowStart, 0));  // rows i ≥ R whose key i − d exists
    if (i0 >= n) continue;
    const at::Tensor s = (qd.slice(0, i0, n) * kd.slice(0, i0 - d, n - d)).sum(-1).t() * scale;  // [head, rows]
    const at::Tensor p = (s - l.slice(1, i0, n)).exp();                                           // [head, rows]
    for (int64_t r = 0; r < m; ++r) out.rowSums[r].slice(1, i0, n).add_(p * rw[r][d].item<double>());
    if (cw.defined()) out.colSums.slice(1, i0 - d, n - d).add_(p * cw[d].item<double>());
  }
  return out;
}

}  // namespace

int64_t nearBandWidth() { return probeKernelsBuilt() || nearBandEmulated() ? kNearWidth : 0; }

#ifdef MECHSCOPE_WITH_CUDA_KERNELS
namespace {

/// Rows and heads 16-byte aligned with contiguous head dims: what the kernels' cp.async and word loads need.
bool kernelLayout(const at::Tensor& x) {
  return x.stride(2) == 1 && x.stride(0) % 8 == 0 && x.stride(1) % 8 == 0 && reinterpret_cast<uintptr_t>(x.data_ptr()) % 16 == 0;
}

/// `x` itself when the kernels can read it in place, else a contiguous copy.
at::Tensor kernelReadable(const at::Tensor& x) { return kernelLayout(x) ? x : x.contiguous(); }

/// Compute capability ≥ 8.0 (bf16 mma.sync; the kernels are built for sm_80 and sm_90).
bool computeCapability8(const at::Device& device) {
  int major = 0;
  if (cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device.index()) != cudaSuccess) {
    (void)cudaGetLastError();
    return false;
  }
  return major >= 8;
}

/// The conditions both kernels share: q [n, head, d] and k [n, kv_head, d] bf16/fp16 on CUDA, d_head 64 or 128, heads a
/// multiple of kv heads, not switched off (MECHSCOPE_PROBE_KERNEL=0).
bool kernelsApply(const at::Tensor& q, const at::Tensor& k) {
  if (switchedOff("MECHSCOPE_PROBE_KERNEL") || !q.is_cuda() || !k.is_cuda() || q.dim() != 3 || k.dim() != 3) return false;
  const auto dt = q.scalar_type();
  if ((dt != at::kBFloat16 && dt != at::kHalf) || k.scalar_type() != dt) return false;
  const int64_t d = q.size(2);
  if (!probe_kernels::farSumsHeadSizeSupported(d) || k.size(2) != d || k.size(0) != q.size(0)) return false;
  if (k.size(1) == 0 || q.size(1) % k.size(1) != 0) return false;
  return computeCapability8(q.device());
}

cudaStream_t currentStream(const at::Tensor& x) { return c10::cuda::getCurrentCUDAStream(x.device().index()).stream(); }

void throwIfFailed(int err, const char* kernel) {
  if (err != 0) throw std::runtime_error(fmt::format("probe {} kernel: launch failed ({})", kernel, cudaGetErrorString(static_cast<cudaError_t>(err))));
}

}  // namespace
#endif

bool nearBandApplies(const at::Tensor& q, const at::Tensor& k) {
  if (nearBandEmulated()) return true;
#ifdef MECHSCOPE_WITH_CUDA_KERNELS
  return kernelsApply(q, k);
#else
  (void)q, (void)k;
  return false;
#endif
}

std::optional<FarSums> farSumsOnDevice(const at::Tensor& q, const at::Tensor& k, const at::Tensor& lse, double scale, int64_t shift,
                                       int64_t rowStart) {
#ifndef MECHSCOPE_WITH_CUDA_KERNELS
  (void)q, (void)k, (void)lse, (void)scale, (void)shift, (void)rowStart;
  return std::nullopt;
#else
  if (shift < 0 || !kernelsApply(q, k)) return std::nullopt;
  const c10::cuda::CUDAGuard guard(q.device());
  const int64_t n = q.size(0), heads = q.size(1);
  const at::Tensor qc = kernelReadable(q), kc = kernelReadable(k);  // [n, head, d], [n, kv_head, d]
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
  a.group = static_cast<int>(heads / k.size(1));
  a.dHead = static_cast<int>(q.size(2));
  a.scale = static_cast<float>(scale);
  a.half = q.scalar_type() == at::kHalf;
  if (const char* shape = std::getenv("MECHSCOPE_FAR_SUMS_SHAPE")) a.shape = std::atoi(shape);  // timing the block shapes
  throwIfFailed(probe_kernels::launchFarSums(a, currentStream(q)), "far-sums");
  return out;
#endif
}

std::optional<NearBand> nearBandOnDevice(const at::Tensor& q, const at::Tensor& k, const at::Tensor& lse, double scale,
                                         int64_t rowStart, const at::Tensor& rowWeights, const at::Tensor& colWeights) {
  if (nearBandEmulated()) return nearBandEmulation(q, k, lse, scale, rowStart, rowWeights, colWeights);
#ifndef MECHSCOPE_WITH_CUDA_KERNELS
  (void)q, (void)k, (void)lse, (void)scale, (void)rowStart, (void)rowWeights, (void)colWeights;
  return std::nullopt;
#else
  if (!kernelsApply(q, k)) return std::nullopt;
  const int64_t width = kNearWidth;
  const int64_t m = rowWeights.defined() ? rowWeights.size(0) : 0;
  if (m > probe_kernels::kNearBandMaxRowWeights || (m > 0 && rowWeights.size(1) != width)) return std::nullopt;
  if (colWeights.defined() && colWeights.numel() != width) return std::nullopt;
  const c10::cuda::CUDAGuard guard(q.device());
  const int64_t n = q.size(0), heads = q.size(1);
  const auto dopt = q.options().dtype(at::kDouble);
  const at::Tensor qc = kernelReadable(q), kc = kernelReadable(k);  // [n, head, d], [n, kv_head, d]
  const at::Tensor l = lse.to(dopt).contiguous();                    // [head, n]
  const at::Tensor rw = m > 0 ? rowWeights.to(dopt).contiguous() : at::Tensor();          // [m, width]
  const at::Tensor cw = colWeights.defined() ? colWeights.to(dopt).contiguous() : at::Tensor();  // [width]
  NearBand out;
  out.rowSums = at::zeros({m, heads, n}, dopt);
  if (cw.defined()) out.colSums = at::zeros({heads, n}, dopt);
  probe_kernels::NearBandArgs a;
  a.q = qc.data_ptr();
  a.k = kc.data_ptr();
  a.lse = l.data_ptr<double>();
  a.rowWeights = m > 0 ? rw.data_ptr<double>() : nullptr;
  a.colWeights = cw.defined() ? cw.data_ptr<double>() : nullptr;
  a.rowSums = m > 0 ? out.rowSums.data_ptr<double>() : nullptr;
  a.colSums = cw.defined() ? out.colSums.data_ptr<double>() : nullptr;
  a.n = n;
  a.qRowStride = qc.stride(0);
  a.qHeadStride = qc.stride(1);
  a.kRowStride = kc.stride(0);
  a.kHeadStride = kc.stride(1);
  a.rowStart = std::max<int64_t>(rowStart, 0);
  a.rowWeightCount = static_cast<int>(m);
  a.heads = static_cast<int>(heads);
  a.group = static_cast<int>(heads / k.size(1));
  a.dHead = static_cast<int>(q.size(2));
  a.scale = scale;
  a.half = q.scalar_type() == at::kHalf;
  throwIfFailed(probe_kernels::launchNearBand(a, currentStream(q)), "near-band");
  return out;
#endif
}

}  // namespace mechscope::probe_detail
