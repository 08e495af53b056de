#pragma once
// The two kinds of run edge attribution patching needs (docs/metrics.md §12.6): the node outputs of a
// run (the sources' activations), and the gradient of the logit difference with respect to every
// receiver's input, where a receiver's input is the residual sum that only it reads: a head's q, k and v
// each read their own copy of resid_pre (before ln1), an MLP its own copy of the residual before ln2,
// the logits the final residual.
//
// The forward pass computes q, k and v of all heads from one ln1(resid_pre), so there is no hook on a
// head's own input. The gradient is taken at hook_q/k/v (and ln2.hook_normalized) by autograd through the
// whole model, then pulled back through the few per-position operations between the residual and that
// hook (ln1, the head's rows of W_Q/W_K/W_V and their bias, qk-norm) by a second small autograd pass on
// per-head leaf copies of the recorded residual: the chain rule split at the hook, exact for every family
// whose hook_q/k/v is ln1 → linear → (qk-norm). The pass checks that its forward reproduces the recorded
// hook_q/k/v, so a family whose head input differs is refused rather than scored wrongly.
#include <vector>

#include "core/common/run_context.hpp"
#include "core/common/tensor.hpp"
#include "core/model/hooked_transformer.hpp"

namespace mechscope::analysis {

/// The source activations of one run (model dtype, detached).
struct NodeOutputs {
  at::Tensor input;             ///< [batch, pos, d_model] blocks.0.hook_resid_pre (embeddings)
  std::vector<at::Tensor> z;    ///< per layer [batch, pos, head, d_head] attn.hook_z (× W_O = the head's output)
  std::vector<at::Tensor> mlp;  ///< per layer [batch, pos, d_model] hook_mlp_out
  at::Tensor metric;            ///< [batch] fp32 logit difference of the run
};

/// ∂(Σ_rows LD)/∂(hook) of one forward + backward, with what pulling them back to each receiver's own input
/// needs; receiverInputGrads does that position range by position range, so no [rows, pos, receivers, d_model]
/// tensor of the whole prompt is ever formed (long inputs). Model dtype, detached.
struct ReceiverGradients {
  std::vector<at::Tensor> gq, gk, gv;          ///< per layer [rows, pos, head | kv_head, d_head] at hook_q / hook_k / hook_v
  std::vector<at::Tensor> gln2;                ///< per layer [rows, pos, d_model] at ln2.hook_normalized
  std::vector<at::Tensor> residPre, residMid;  ///< per layer [rows, pos, d_model] the run's ln1 / ln2 inputs
  std::vector<at::Tensor> q, k, v;             ///< per layer the recorded hook_q/k/v (the pull-back checks it reproduces them)
  at::Tensor logits;                           ///< [rows, pos, d_model] the final residual's (only the last position is read)
  at::Tensor metric;                           ///< [rows] fp32 LD of this run
};

/// The receivers' input gradients of one layer at some positions.
struct LayerReceiverGrads {
  at::Tensor q, k, v;  ///< [rows, positions, head | kv_head | kv_head, d_model]: each head's own copy of resid_pre
  at::Tensor mlp;      ///< [rows, positions, d_model]: the MLP's own copy of its ln2 input
};

/// Layer `layer`'s receiver-input gradients at positions [p0, p1): the hook gradients pulled back through ln1 →
/// the head's rows of W_Q/W_K/W_V (+ bias, qk-norm) and through ln2, on the run's own residuals. Error when the
/// recomputed hook_q/k/v differ from the recorded ones (a family whose head input is not ln1 → linear → qk-norm).
LayerReceiverGrads receiverInputGrads(const HookedTransformer& model, const ReceiverGradients& g, int layer, int64_t p0, int64_t p1);

/// Every head's output of layer `layer` from its hook_z (or a difference of two): z_h · W_O[h], without b_O
/// (which belongs to no head), in `dtype`. z [rows, pos, head, d_head] → [rows, pos, head, d_model].
at::Tensor headOutputs(const HookedTransformer& model, int layer, const at::Tensor& z, at::ScalarType dtype);

/// Runs `tokens` [batch, pos] and records the node outputs (no autograd); `path` is the attention path asked of
/// the forward (Auto: fused where LibTorch has it, else explicit, or chunked for long inputs).
NodeOutputs recordNodeOutputs(const HookedTransformer& model, const at::Tensor& tokens, const at::Tensor& correct,
                              const at::Tensor& incorrect, const RunContext* ctx = nullptr, AttentionPath path = AttentionPath::Auto);

/// Runs `tokens` [batch, pos] (with blocks.0.hook_resid_pre replaced by `input` [batch, pos, d_model] when
/// defined: EAP-IG's interpolated embeddings), backpropagates Σ_batch LD and returns the receivers' hook
/// gradients (receiverInputGrads turns them into input gradients); `record`, when given, receives the run's
/// node outputs (EAP's clean run). The fused and chunked attention paths keep no [pos, key] pattern for the
/// backward (the chunked one recomputes its tiles there).
ReceiverGradients receiverGradients(const HookedTransformer& model, const at::Tensor& tokens, const at::Tensor& correct,
                                    const at::Tensor& incorrect, const at::Tensor& input = {}, NodeOutputs* record = nullptr,
                                    const RunContext* ctx = nullptr, AttentionPath path = AttentionPath::Auto);

}  // namespace mechscope::analysis
