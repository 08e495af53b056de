#pragma once
// Ablation of mixture-of-experts experts as components: expert e of sparse layer l is the slice
// [:, :, e, :] of blocks.l.mlp.hook_expert_out (its routing-weighted contribution to hook_mlp_out, 0 where
// a token was not routed to it). Zero ablation removes the contribution; mean ablation replaces it with
// its mean over the reference prompts at each position. Listed as LAYER.EXPERT, as heads are LAYER.HEAD.
#include "analysis/ablation/ablation.hpp"

namespace mechscope::analysis {

/// Checks `params.experts` against the model (sparse layer, expert index, zero or mean, no roles or
/// knockout); InputError / UnsupportedError naming the expert otherwise.
void checkExpertAblation(const HookedTransformer& model, const AblationParams& params);

/// Adds to `hooks` the ablation of every expert of `params.experts` at `params.positions` of `tokens`
/// [batch, pos]; mean ablation reads hook_expert_out of `reference` (ablationReference).
void addExpertAblationHooks(HookSet& hooks, const HookedTransformer& model, const at::Tensor& tokens, const AblationParams& params,
                            const ActivationCache& reference);

}  // namespace mechscope::analysis
