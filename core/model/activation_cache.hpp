#pragma once
// ActivationCache: TransformerLens hook name → tensor, plus the tokens the run saw.
// Layouts are TransformerLens's: patterns [batch, head, query, key]; q/k/v/z [batch, pos, head, d_head];
// residual-stream hooks [batch, pos, d_model].
#include <map>
#include <string>
#include <vector>

#include "core/common/tensor.hpp"

namespace mechscope {

/// Cached activations of one forward pass.
struct ActivationCache {
  std::map<std::string, at::Tensor> tensors;  ///< TransformerLens name → tensor (on the device it was cached to)
  at::Tensor tokens;                          ///< [batch, pos] int64

  /// True when `name` was cached.
  [[nodiscard]] bool has(const std::string& name) const { return tensors.count(name) != 0; }
  /// The tensor cached under a full TransformerLens name; throws InputError naming the missing hook.
  [[nodiscard]] const at::Tensor& get(const std::string& name) const;
  /// Shorthand as TransformerLens: at("pattern", 3) → "blocks.3.attn.hook_pattern",
  /// at("resid_pre", 0) → "blocks.0.hook_resid_pre", at("q", 1) → "blocks.1.attn.hook_q".
  [[nodiscard]] const at::Tensor& at(const std::string& shortName, int layer) const;
  /// The full hook name for a short name and layer (see at()).
  static std::string fullName(const std::string& shortName, int layer);
  /// Sorted hook names.
  [[nodiscard]] std::vector<std::string> names() const;
};

}  // namespace mechscope
