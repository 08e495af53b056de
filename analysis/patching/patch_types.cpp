#include "analysis/patching/patch_types.hpp"

#include <ATen/ATen.h>

#include <fmt/format.h>

#include "core/common/errors.hpp"

namespace mechscope::analysis {

void checkPatchInputs(const PatchInputs& in, int64_t vocab) {
  if (!in.clean.defined() || !in.corrupt.defined() || in.clean.dim() != 2 || in.corrupt.dim() != 2)
    throw InputError("patching: clean and corrupted token batches must both be [batch, pos]");
  if (!in.clean.sizes().equals(in.corrupt.sizes()))
    throw InputError(fmt::format("patching: clean prompts are [{}, {}] but corrupted prompts are [{}, {}] "
                                 "(they must have equal count and token length)",
                                 in.clean.size(0), in.clean.size(1), in.corrupt.size(0), in.corrupt.size(1)));
  const int64_t B = in.clean.size(0);
  if (!in.correct.defined() || !in.incorrect.defined() || in.correct.numel() != B || in.incorrect.numel() != B)
    throw InputError(fmt::format("patching: {} prompts need {} correct and {} incorrect answer ids", B, B, B));
  for (const at::Tensor* t : {&in.correct, &in.incorrect}) {
    const int64_t lo = t->min().item<int64_t>(), hi = t->max().item<int64_t>();
    if (lo < 0 || hi >= vocab)
      throw InputError(fmt::format("patching: answer id {} is outside the vocabulary [0, {})", lo < 0 ? lo : hi, vocab));
  }
}

std::string toString(PatchComponent c) {
  switch (c) {
    case PatchComponent::ResidPre: return "resid_pre";
    case PatchComponent::AttnOut: return "attn_out";
    case PatchComponent::MlpOut: return "mlp_out";
    case PatchComponent::HeadOut: return "head_out";
    case PatchComponent::Q: return "q";
    case PatchComponent::K: return "k";
    case PatchComponent::V: return "v";
    case PatchComponent::Pattern: return "pattern";
    case PatchComponent::ExpertOut: return "expert_out";
  }
  return "?";
}

PatchComponent parsePatchComponent(const std::string& name) {
  if (name == "z") return PatchComponent::HeadOut;
  for (auto c : {PatchComponent::ResidPre, PatchComponent::AttnOut, PatchComponent::MlpOut, PatchComponent::HeadOut,
                 PatchComponent::Q, PatchComponent::K, PatchComponent::V, PatchComponent::Pattern, PatchComponent::ExpertOut})
    if (toString(c) == name) return c;
  throw InputError(fmt::format("component '{}' is unknown (expected resid_pre, attn_out, mlp_out, head_out, q, k, v "
                               "pattern or expert_out)",
                               name));
}

bool isHeadComponent(PatchComponent c) {
  return c == PatchComponent::HeadOut || c == PatchComponent::Q || c == PatchComponent::K || c == PatchComponent::V ||
         c == PatchComponent::Pattern || c == PatchComponent::ExpertOut;
}

namespace {
const char* siteSuffix(PatchComponent c) {
  switch (c) {
    case PatchComponent::ResidPre: return "hook_resid_pre";
    case PatchComponent::AttnOut: return "hook_attn_out";
    case PatchComponent::MlpOut: return "hook_mlp_out";
    case PatchComponent::HeadOut: return "attn.hook_z";
    case PatchComponent::Q: return "attn.hook_q";
    case PatchComponent::K: return "attn.hook_k";
    case PatchComponent::V: return "attn.hook_v";
    case PatchComponent::Pattern: return "attn.hook_pattern";
    case PatchComponent::ExpertOut: return "mlp.hook_expert_out";
  }
  return "";
}
}  // namespace

std::string hookName(PatchComponent c, int layer) { return fmt::format("blocks.{}.{}", layer, siteSuffix(c)); }

std::string hookGlob(PatchComponent c) { return fmt::format("blocks.*.{}", siteSuffix(c)); }

}  // namespace mechscope::analysis
