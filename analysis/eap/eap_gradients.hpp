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

/// ∂(Σ_batch LD)/∂(receiver input) of one forward + backward (model dtype).
struct ReceiverGradients {
  std::vector<at::Tensor> q;    ///< per layer [batch, pos, head, d_model]
  std::vector<at::Tensor> k;    ///< per layer [batch, pos, kv_head, d_model]
  std::vector<at::Tensor> v;    ///< per layer [batch, pos, kv_head, d_model]
  std::vector<at::Tensor> mlp;  ///< per layer [batch, pos, d_model]
  at::Tensor logits;            ///< [batch, pos, d_model] (the final residual; only the last position is read)
  at::Tensor metric;            ///< [batch] fp32 LD of this run
};

/// Every head's output of layer `layer` from its hook_z (or a difference of two): z_h · W_O[h], without b_O
/// (which belongs to no head), in `dtype`. z [rows, pos, head, d_head] → [rows, pos, head, d_model].
at::Tensor headOutputs(const HookedTransformer& model, int layer, const at::Tensor& z, at::ScalarType dtype);

/// Runs `tokens` [batch, pos] and records the node outputs (no autograd).
NodeOutputs recordNodeOutputs(const HookedTransformer& model, const at::Tensor& tokens, const at::Tensor& correct,
                              const at::Tensor& incorrect, const RunContext* ctx = nullptr);

/// Runs `tokens` [batch, pos] (with blocks.0.hook_resid_pre replaced by `input` [batch, pos, d_model] when
/// defined: EAP-IG's interpolated embeddings), backpropagates Σ_batch LD and returns every receiver's
/// input gradient; `record`, when given, receives the run's node outputs (EAP's clean run).
ReceiverGradients receiverGradients(const HookedTransformer& model, const at::Tensor& tokens, const at::Tensor& correct,
                                    const at::Tensor& incorrect, const at::Tensor& input = {}, NodeOutputs* record = nullptr,
                                    const RunContext* ctx = nullptr);

}  // namespace mechscope::analysis
