#include "core/model/normalization.hpp"

#include <ATen/ATen.h>
#include <torch/version.h>

#include "core/common/env.hpp"

// at::rms_norm exists from LibTorch 2.4 but is a chain of element-wise kernels until 2.8 brought a fused CUDA kernel.
#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 8)
#define MECHSCOPE_FUSED_RMS_NORM 1
#endif

namespace mechscope {

bool fusedRmsNormApplies(const ModelConfig& c, const at::Tensor& x, const at::Tensor& w) {
#ifdef MECHSCOPE_FUSED_RMS_NORM
  if (c.normKind != NormKind::RMSNorm || !x.is_cuda()) return false;
  if (x.scalar_type() != at::kBFloat16 && x.scalar_type() != at::kHalf) return false;
  if (w.defined() && (w.scalar_type() != x.scalar_type() || w.device() != x.device())) return false;
  return !switchedOff("MECHSCOPE_FUSED_RMSNORM");
#else
  (void)c;
  (void)x;
  (void)w;
  return false;
#endif
}

at::Tensor applyModelNorm(const ModelConfig& c, const at::Tensor& x, const at::Tensor& w, const at::Tensor& b) {
  if (c.normKind == NormKind::LayerNorm) return at::layer_norm(x, {x.size(-1)}, w, b, c.normEps);
#ifdef MECHSCOPE_FUSED_RMS_NORM
  if (fusedRmsNormApplies(c, x, w)) {
    // The kernel applies a weight in fp32 before its one rounding: Gemma's / OLMo-2's order. HF's other families round
    // x̂ first and multiply by the weight in the input dtype, so the weight stays outside for them.
    const int64_t d = x.size(-1);
    if (!w.defined()) return at::rms_norm(x, {d}, std::nullopt, c.normEps);
    if (c.normScaleFp32) return at::rms_norm(x, {d}, w, c.normEps);
    return w * at::rms_norm(x, {d}, std::nullopt, c.normEps);
  }
#endif
  // HF's op order: x in fp32 [..., d], its row's rsqrt(mean(x²) + eps), then back to x's dtype and the weight.
  at::Tensor xf = x.to(at::kFloat);
  xf = xf * at::rsqrt(xf.pow(2).mean(-1, true) + c.normEps);
  if (c.normScaleFp32 && w.defined()) return (xf * w.to(at::kFloat)).to(x.scalar_type());
  at::Tensor out = xf.to(x.scalar_type());
  return w.defined() ? w * out : out;
}

}  // namespace mechscope
