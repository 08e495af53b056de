#include "core/model/hooks.hpp"

#include <ATen/ATen.h>

#include <fmt/format.h>

#include "core/common/errors.hpp"

namespace mechscope {

HookSet& HookSet::add(std::string nameOrGlob, HookFn fn) {
  m_hooks.emplace_back(std::move(nameOrGlob), std::move(fn));
  return *this;
}

HookSet& HookSet::except(std::string glob) {
  m_except.push_back(std::move(glob));
  return *this;
}

bool HookSet::excepted(const std::string& name) const {
  for (const std::string& glob : m_except)
    if (matches(glob, name)) return true;
  return false;
}

bool HookSet::matches(const std::string& glob, const std::string& name) {
  // Iterative wildcard match with single-star backtracking: linear for the patterns we see.
  std::size_t g = 0, n = 0, star = std::string::npos, mark = 0;
  while (n < name.size()) {
    if (g < glob.size() && (glob[g] == '?' || glob[g] == name[n])) {
      ++g;
      ++n;
    } else if (g < glob.size() && glob[g] == '*') {
      star = g++;
      mark = n;
    } else if (star != std::string::npos) {
      g = star + 1;
      n = ++mark;
    } else {
      return false;
    }
  }
  while (g < glob.size() && glob[g] == '*') ++g;
  return g == glob.size();
}

bool HookSet::active(const std::string& name) const {
  if (excepted(name)) return false;
  for (const auto& [glob, fn] : m_hooks)
    if (matches(glob, name)) return true;
  return false;
}

at::Tensor HookSet::apply(const at::Tensor& t, const HookContext& ctx) const {
  if (excepted(ctx.name)) return t;
  at::Tensor cur = t;
  for (const auto& [glob, fn] : m_hooks) {
    if (!matches(glob, ctx.name)) continue;
    std::optional<at::Tensor> out = fn(cur, ctx);
    if (!out) continue;
    if (!out->defined() || out->sizes() != cur.sizes())
      throw InputError(fmt::format("hook '{}' on {} returned shape {}, expected {}", glob, ctx.name,
                                   out->defined() ? fmt::format("{}", fmt::join(out->sizes(), "x")) : "undefined",
                                   fmt::join(cur.sizes(), "x")));
    cur = out->to(cur.device(), cur.scalar_type());
  }
  return cur;
}

at::Tensor HookSet::applyOn(const at::Tensor& t, const HookContext& ctx, at::Device home) const {
  if (t.device() == home) return apply(t, ctx);
  const at::Tensor seen = t.to(home);
  const at::Tensor out = apply(seen, ctx);
  if (out.is_same(seen) && !seen.requires_grad()) return t;  // read only: the block keeps its own copy
  return out.to(t.device());
}

}  // namespace mechscope
