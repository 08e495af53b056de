#pragma once
// Direct logit attribution along an answer direction (docs/causal-protocols.md §DLA): each head's and
// each MLP's output at the last position, through the final norm with the clean run's cached scale
// (TransformerLens' `apply_ln_to_stack`: centred for LayerNorm, divided by the scale, times its
// weight), dotted with W_U[correct] − W_U[incorrect]. Wang et al. use it (IO − S) to tell name movers
// from negative name movers. The parts plus `rest` (embeddings, biases, the norm's bias) sum to the
// logit difference.
#include "core/common/run_context.hpp"
#include "core/common/tensor.hpp"
#include "core/model/hooked_transformer.hpp"

namespace mechscope::analysis {

/// Direct logit attribution of every head and MLP.
struct DirectLogitResult {
  at::Tensor heads;           ///< [layer, head] fp64: mean over prompts
  at::Tensor mlp;             ///< [layer] fp64: mean over prompts
  at::Tensor perPromptHeads;  ///< [batch, layer, head] fp64
  at::Tensor perPromptMlp;    ///< [batch, layer] fp64
  at::Tensor logitDiff;       ///< [batch] fp64: the clean logit difference the parts add up to (with `rest`)
  at::Tensor rest;            ///< [batch] fp64: logitDiff − Σ heads − Σ MLPs
};

/// Attributes `correct` − `incorrect` ([batch] ids) at the last position of `tokens` [batch, pos].
DirectLogitResult directLogitAttribution(const HookedTransformer& model, const at::Tensor& tokens, const at::Tensor& correct,
                                         const at::Tensor& incorrect, const RunContext* ctx = nullptr);

/// Wang et al.'s OV copy score: for each head, the share (in %) of (prompt, position) pairs whose token
/// is among the `k` largest logits of unembed(ln_final(sign · OV(ln1(resid_post of block 0))))
/// (experiments.check_copy_circuit), with sign +1 (copying) and −1 (negative copying).
struct CopyScoreResult {
  at::Tensor positive;  ///< [layer, head] %
  at::Tensor negative;  ///< [layer, head] %
  int64_t pairs = 0;    ///< (prompt, position) pairs scored
};

/// Copy scores of every head on the tokens at `positions` [batch, n] int64 of `tokens` [batch, pos].
CopyScoreResult ovCopyScores(const HookedTransformer& model, const at::Tensor& tokens, const at::Tensor& positions, int64_t k = 5,
                             const RunContext* ctx = nullptr);

}  // namespace mechscope::analysis
