#pragma once
// Hooks on TransformerLens-named activation sites. A HookSet is passed to one forward/generate call
// and lives only for it (nothing global), so hooks are always detached when the call returns.
#include <functional>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "core/common/tensor.hpp"

namespace mechscope {

/// Where a hook fires.
struct HookContext {
  std::string name;  ///< full TransformerLens name, e.g. "blocks.3.attn.hook_pattern"
  int layer = -1;    ///< block index, -1 if not in a block
  int step = -1;     ///< decode step during generation, -1 for prefill / plain forward
};

/// A hook sees the activation and may return a replacement (same shape); readers return nullopt.
using HookFn = std::function<std::optional<at::Tensor>(const at::Tensor&, const HookContext&)>;

/// The hooks of one run: (name or glob, function) pairs applied in insertion order.
class HookSet {
 public:
  /// Adds a hook on every site whose name matches `nameOrGlob` ('*' any run of characters, '?' one).
  HookSet& add(std::string nameOrGlob, HookFn fn);
  /// Leaves every site whose name matches `glob` unhooked, whatever was or will be added for it (e.g. a cache
  /// of '*' whose attention maps are formed apart: ForwardOptions::onDeferredMaps).
  HookSet& except(std::string glob);
  /// Whether `glob` matches `name` as a whole.
  static bool matches(const std::string& glob, const std::string& name);
  /// Whether any hook matches `name`.
  [[nodiscard]] bool active(const std::string& name) const;
  /// Runs the matching hooks in order on `t`; returns the (possibly replaced) tensor. Replacements
  /// with a different shape throw InputError naming the hook.
  [[nodiscard]] at::Tensor apply(const at::Tensor& t, const HookContext& ctx) const;
  /// As apply(), for a model split across devices: the hooks see `t` on `home` (where analyses keep their
  /// tensors) and the result goes back to t's device. Readers on an activation that needs no gradient cost
  /// one copy; otherwise the pass continues with what the hooks saw, so gradients reach it.
  [[nodiscard]] at::Tensor applyOn(const at::Tensor& t, const HookContext& ctx, at::Device home) const;
  /// Number of hooks.
  [[nodiscard]] std::size_t size() const { return m_hooks.size(); }
  /// Whether no hook was added.
  [[nodiscard]] bool empty() const { return m_hooks.empty(); }

 private:
  [[nodiscard]] bool excepted(const std::string& name) const;
  std::vector<std::pair<std::string, HookFn>> m_hooks;
  std::vector<std::string> m_except;  // globs of sites left unhooked
};

}  // namespace mechscope
