#pragma once
// TransformerLens hook names built from a layer index, so analyses and front ends never spell
// "blocks.{l}.attn.hook_z" by hand (ForwardPass fires exactly these names; ActivationCache::fullName
// maps the short names). Standard library only.
#include <string>
#include <string_view>

namespace mechscope::hook {

/// "blocks.{layer}.{point}", e.g. point "attn.hook_z".
inline std::string name(int layer, std::string_view point) { return "blocks." + std::to_string(layer) + "." + std::string(point); }
/// blocks.{l}.hook_resid_pre
inline std::string residPre(int layer) { return name(layer, "hook_resid_pre"); }
/// blocks.{l}.hook_resid_post
inline std::string residPost(int layer) { return name(layer, "hook_resid_post"); }
/// blocks.{l}.hook_attn_out
inline std::string attnOut(int layer) { return name(layer, "hook_attn_out"); }
/// blocks.{l}.hook_mlp_out
inline std::string mlpOut(int layer) { return name(layer, "hook_mlp_out"); }
/// blocks.{l}.attn.hook_q
inline std::string q(int layer) { return name(layer, "attn.hook_q"); }
/// blocks.{l}.attn.hook_k
inline std::string k(int layer) { return name(layer, "attn.hook_k"); }
/// blocks.{l}.attn.hook_v
inline std::string v(int layer) { return name(layer, "attn.hook_v"); }
/// blocks.{l}.attn.hook_z
inline std::string z(int layer) { return name(layer, "attn.hook_z"); }
/// blocks.{l}.attn.hook_pattern
inline std::string pattern(int layer) { return name(layer, "attn.hook_pattern"); }

}  // namespace mechscope::hook
