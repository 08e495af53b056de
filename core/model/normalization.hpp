// The pre/post norms of every family as its Hugging Face module computes them; shared by the forward pass and the
// analyses that apply a model's norm themselves (logit lens, DLA), so that both give the same numbers.
#pragma once

#include <ATen/core/Tensor.h>

#include "core/model/model_config.hpp"

namespace mechscope {

/// The norm of `x` [..., d_model or d_head] with weight `w` and bias `b` (either may be undefined): LayerNorm, or
/// RMSNorm as HF computes it — statistics in fp32, the weight applied after casting back (Gemma, OLMo-2: in fp32
/// before it). Where fusedRmsNormApplies, LibTorch's fused RMSNorm kernel gives x̂ (and Gemma's / OLMo-2's fp32
/// weight) in one pass, with HF's roundings: results differ from HF's op-by-op ones only through the fp32 order of
/// the mean of squares (one bf16 unit in the last place, rarely).
[[nodiscard]] at::Tensor applyModelNorm(const ModelConfig& c, const at::Tensor& x, const at::Tensor& w, const at::Tensor& b);

/// Whether applyModelNorm runs LibTorch's fused RMSNorm kernel for these inputs: an RMSNorm family, CUDA, bf16/fp16
/// input with a weight of the same dtype, LibTorch ≥ 2.8 (whose rms_norm has a fused CUDA kernel),
/// MECHSCOPE_FUSED_RMSNORM not 0. fp32 keeps HF's op order (the parity tests' bounds).
[[nodiscard]] bool fusedRmsNormApplies(const ModelConfig& c, const at::Tensor& x, const at::Tensor& w);

}  // namespace mechscope
