#include "core/model/activation_cache.hpp"

#include <fmt/format.h>

#include "core/common/errors.hpp"

namespace mechscope {

const at::Tensor& ActivationCache::get(const std::string& name) const {
  auto it = tensors.find(name);
  if (it == tensors.end()) throw InputError(fmt::format("activation '{}' is not in the cache", name));
  return it->second;
}

std::string ActivationCache::fullName(const std::string& shortName, int layer) {
  // Block-level hooks sit directly under blocks.{l}; attention/MLP/norm hooks under their submodule.
  static const std::map<std::string, std::string> kSub = {
      {"q", "attn.hook_q"},           {"k", "attn.hook_k"},           {"v", "attn.hook_v"},
      {"rot_q", "attn.hook_rot_q"},   {"rot_k", "attn.hook_rot_k"},   {"attn_scores", "attn.hook_attn_scores"},
      {"pattern", "attn.hook_pattern"}, {"z", "attn.hook_z"},         {"result", "attn.hook_result"},
      {"pre", "mlp.hook_pre"},        {"post", "mlp.hook_post"},      {"ln1", "ln1.hook_normalized"},
      {"ln2", "ln2.hook_normalized"}, {"ln1_post", "ln1_post.hook_normalized"}, {"ln2_post", "ln2_post.hook_normalized"},
      {"resid_pre", "hook_resid_pre"}, {"resid_mid", "hook_resid_mid"},
      {"resid_post", "hook_resid_post"}, {"attn_out", "hook_attn_out"}, {"mlp_out", "hook_mlp_out"},
  };
  auto it = kSub.find(shortName);
  if (it == kSub.end()) throw InputError(fmt::format("unknown activation short name '{}'", shortName));
  return fmt::format("blocks.{}.{}", layer, it->second);
}

const at::Tensor& ActivationCache::at(const std::string& shortName, int layer) const {
  return get(fullName(shortName, layer));
}

std::vector<std::string> ActivationCache::names() const {
  std::vector<std::string> out;
  out.reserve(tensors.size());
  for (const auto& [k, v] : tensors) out.push_back(k);
  return out;
}

}  // namespace mechscope
