#pragma once
// The model's final norm and unembedding applied outside the forward pass, so analyses can read the
// last hidden state as Hugging Face reports it (hidden_states[-1] is taken after the final norm) and
// per-token predictive statistics, without the forward materialising [pos, vocab] logits.
#include <cstdint>
#include <vector>

#include "core/common/tensor.hpp"
#include "core/model/hooked_transformer.hpp"

namespace mechscope::analysis {

/// A norm of `model`'s kind (LayerNorm, or RMSNorm with fp32 statistics as HF) with weight `w` and bias
/// `b` (either may be undefined) applied to `x` [..., d_model], e.g. a block's ln1.
at::Tensor applyNorm(const HookedTransformer& model, const at::Tensor& x, const at::Tensor& w, const at::Tensor& b);

/// ln_final of `model` applied to `resid` [..., d_model] (LayerNorm, or RMSNorm with fp32 statistics
/// as HF): equals the forward's `ln_final.hook_normalized` and HF's last `hidden_states` entry.
at::Tensor applyFinalNorm(const HookedTransformer& model, const at::Tensor& resid);

/// The model's unembedding of final-normed states `normed` [..., d_model] → fp32 logits [..., vocab], as the
/// forward pass's head: W_U (+ b_U), then the final logit soft-cap tanh(l / c)·c where the family has one
/// (Gemma 2).
at::Tensor applyUnembed(const HookedTransformer& model, const at::Tensor& normed);

/// Per-position prediction statistics of one sequence, indexed by the token they predict.
struct TokenPredictions {
  std::vector<double> entropy;  ///< [pos] nats: H(softmax(logits[t − 1])); NaN at t = 0 (nothing predicts it)
  std::vector<double> logProb;  ///< [pos] log softmax(logits[t − 1])[ids[t]]; NaN at t = 0
};

/// Unembeds `normed` [pos, d_model] (the final-normed states of `ids`) `chunk` positions at a time
/// (fp32 logits as the forward pass) and returns the entropy and realised-token log-probability. Sums over the
/// vocabulary run in fp64, or in fp32 for a bf16/fp16 model (whose logits are only bf16-accurate anyway).
TokenPredictions tokenPredictions(const HookedTransformer& model, const at::Tensor& normed, const std::vector<int64_t>& ids,
                                  int64_t chunk = 256);

}  // namespace mechscope::analysis
