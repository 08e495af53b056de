#pragma once
// Private to core/model: state precomputed at load and the forward pass that HookedTransformer's
// public methods share.
#include <optional>
#include <string>
#include <vector>

#include "core/model/hooked_transformer.hpp"

namespace mechscope {

/// Applies the hooks of `name` (if any) to `t`; on a split model they see it on the home device.
struct Hooker {
  const HookSet* hooks;
  int step;
  std::optional<at::Device> home = std::nullopt;  // set only when the model's blocks are split
  at::Tensor operator()(const at::Tensor& t, const std::string& name, int layer) const {
    if (!hooks || !hooks->active(name)) return t;
    const HookContext hc{name, layer, step};
    return home ? hooks->applyOn(t, hc, *home) : hooks->apply(t, hc);
  }
  [[nodiscard]] bool on(const std::string& name) const { return hooks && hooks->active(name); }
};

/// What a hook gave back for a tensor the pass forms only to show it (hook_result, mlp.hook_expert_out):
/// `value`, and whether the pass must go on from it — replaced, edited in place (version counter), or carrying
/// gradients — instead of its own plain computation. A hook that only read it leaves the logits bit-identical
/// to an unhooked pass (Hooks.ReadingEveryHookLeavesTheLogitsBitIdentical).
struct ShownToHook {
  at::Tensor value;
  bool changed = false;
};
inline ShownToHook showToHook(const Hooker& hp, const at::Tensor& formed, const std::string& name, int layer) {
  const auto version = formed._version();
  at::Tensor value = hp(formed, name, layer);
  const bool changed = !value.is_same(formed) || value._version() != version || value.requires_grad();
  return {std::move(value), changed};
}

/// Hook names of one block, built once (the forward pass never formats strings).
struct LayerHookNames {
  std::string residPre, ln1, q, k, v, rotQ, rotK, scores, pattern, z, result, ln1Post, attnOut, residMid, ln2, mlpPre,
      mlpPreLinear, mlpPost, ln2Post, mlpOut, residPost;
  std::string lse;  // attn.hook_lse: fired only where the fused kernel returns the normalisers (not in hookNames())
  // Mixture-of-experts layers only (core/model/moe_mlp.hpp).
  std::string routerLogits, expertWeights, expertIndices, expertOut, sharedExpertOut;
};

struct HookedTransformer::Impl {
  std::vector<LayerHookNames> names;
  at::Tensor invFreq;         // [rotary_dim / 2] fp32 on the device (rotary models; LongRope: short factors)
  at::Tensor invFreqLong;     // [rotary_dim / 2] LongRope's long factors (LongRope only)
  at::Tensor invFreqSliding;  // [rotary_dim / 2] of the sliding-window layers (ModelConfig::slidingRope only)
};

/// Inputs of one pass through the blocks.
struct PassInput {
  at::Tensor resid;      // [batch, pos, d_model]: resid_pre of block `startLayer`
  at::Tensor positions;  // [batch, pos] int64 position ids
  at::Tensor keyMask;    // [batch, past + pos] bool (undefined: no padding)
  int startLayer = 0;
  KVCache* cache = nullptr;
  int step = -1;
};

/// The forward pass: blocks, final norm, unembedding.
struct ForwardPass {
  /// Runs blocks startLayer.. (or until opts.stopAtLayer), then the head unless stopped.
  static ForwardResult run(const HookedTransformer& m, PassInput in, const ForwardOptions& opts, const HookSet* hooks,
                           const RunContext* ctx);
  /// Embeds tokens (+ learned positions) and applies hook_embed / hook_pos_embed.
  static at::Tensor embed(const HookedTransformer& m, const at::Tensor& tokens, const at::Tensor& positions,
                          const HookSet* hooks, int step);
  /// Position ids [batch, pos] for `pos` new tokens after `past`, from the key mask when present.
  static at::Tensor positionIds(const at::Tensor& keyMask, int64_t batch, int64_t pos, int64_t past, at::Device device);
  /// Builds the names table and rotary frequencies.
  static void prepare(HookedTransformer& m);
  /// Access for the helpers.
  static const HookedTransformer::Impl& impl(const HookedTransformer& m) { return *m.m_impl; }
};

}  // namespace mechscope
