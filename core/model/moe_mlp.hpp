#pragma once
// The mixture-of-experts MLP of a sparse layer (Mixtral, Qwen2/3-MoE, gpt-oss): a router picks top-k
// experts per token (in fp32, as Hugging Face routes), each expert runs only on its routed tokens, and
// the weighted outputs are summed (+ the shared expert where the family has one). Private to core/model.
//
// Hooks of a sparse layer (docs/adding-a-model.md, "Mixture of experts"):
//   mlp.hook_router_logits     [batch, pos, n_experts]  compute dtype; routing reads the hooked value
//   mlp.hook_expert_weights    [batch, pos, k]          fp32 (fp64 models: fp64) weights of the chosen experts
//   mlp.hook_expert_indices    [batch, pos, k]          int64 chosen experts (writable: re-routes)
//   mlp.hook_expert_out        [batch, pos, n_experts, d_model]  each expert's weighted contribution, 0 where
//                              a token was not routed to it; built only when hooked; hook_mlp_out is its sum
//                              over experts (+ the shared expert)
//   mlp.hook_shared_expert_out [batch, pos, d_model]    the shared expert after its sigmoid gate
#include "core/common/tensor.hpp"
#include "core/model/hooked_transformer_impl.hpp"
#include "core/model/hooks.hpp"
#include "core/model/model_config.hpp"
#include "core/model/model_weights.hpp"

namespace mechscope {

/// The config's MLP non-linearity (defined with the forward pass, which the experts share).
at::Tensor applyActivation(Activation activation, const at::Tensor& x);

/// Where one sparse layer's hooks fire.
struct MoeSite {
  const LayerHookNames& names;
  int layer = 0;
  const Hooker& hp;  ///< the pass's hooks (step, home device of a split model)
};

/// The mixture of experts of one sparse layer on x = ln2(…) [batch, pos, d_model] → its output
/// [batch, pos, d_model] (what hook_mlp_out then sees).
at::Tensor moeMlp(const ModelConfig& config, const MoeWeights& weights, const MoeSite& site, const at::Tensor& x);

}  // namespace mechscope
