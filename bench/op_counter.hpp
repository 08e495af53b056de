// Counts the ATen ops a piece of work dispatches on the calling thread (RecordFunction callbacks, in LibTorch 1.13 and
// 2.x alike, no Kineto needed): every op, the top-level ones (those not called by another op), and the top-level ones
// under each of our named ranges (RECORD_USER_SCOPE, e.g. probe::moments). On a GPU each top-level op is a host-side
// dispatch of several microseconds, so this is what an analysis costs the host, per layer once divided by the layers.
#pragma once

#include <ATen/record_function.h>

#include <algorithm>
#include <cstdio>
#include <map>
#include <string>
#include <utility>
#include <vector>

namespace mechscope::bench {

/// What countOps saw.
struct OpCounts {
  long long all = 0;                            ///< every op, nested ones included
  long long topLevel = 0;                       ///< ops not called from inside another op
  std::map<std::string, long long> byName;      ///< every op by name
  std::map<std::string, long long> topByRange;  ///< top-level ops by the innermost named range ("" outside any)
  std::map<std::string, long long> allByRange;  ///< every op by the innermost named range
};

namespace op_counter_detail {
inline thread_local OpCounts* counts = nullptr;
inline thread_local int opDepth = 0;
inline thread_local std::vector<std::string> ranges;

inline std::unique_ptr<at::ObserverContext> onStart(const at::RecordFunction& fn) {
  if (!counts) return nullptr;
  if (fn.scope() == at::RecordScope::USER_SCOPE) {
    ranges.emplace_back(fn.name());
    return nullptr;
  }
  const std::string& range = ranges.empty() ? std::string() : ranges.back();
  ++counts->all;
  ++counts->byName[fn.name()];
  ++counts->allByRange[range];
  if (opDepth++ == 0) {
    ++counts->topLevel;
    ++counts->topByRange[range];
  }
  return nullptr;
}

inline void onEnd(const at::RecordFunction& fn, at::ObserverContext*) {
  if (!counts) return;
  if (fn.scope() == at::RecordScope::USER_SCOPE) {
    if (!ranges.empty()) ranges.pop_back();
    return;
  }
  --opDepth;
}
}  // namespace op_counter_detail

/// The ATen ops f() dispatches on this thread.
template <class F>
OpCounts countOps(F&& f) {
  namespace d = op_counter_detail;
  OpCounts out;
  d::counts = &out;
  d::opDepth = 0;
  d::ranges.clear();
  const at::CallbackHandle handle = at::addThreadLocalCallback(
      at::RecordFunctionCallback(d::onStart, d::onEnd).scopes({at::RecordScope::FUNCTION, at::RecordScope::USER_SCOPE}));
  try {
    f();
  } catch (...) {
    at::removeCallback(handle);
    d::counts = nullptr;
    throw;
  }
  at::removeCallback(handle);
  d::counts = nullptr;
  return out;
}

/// Prints `c` with everything divided by `per` (e.g. the layers), the `top` most frequent op names first.
inline void printOpCounts(const OpCounts& c, double per, int top) {
  std::printf("ops: %lld in all, %lld top-level (%.1f / %.1f per layer)\n", c.all, c.topLevel, c.all / per, c.topLevel / per);
  for (const auto& [range, k] : c.topByRange) {
    const long long all = c.allByRange.count(range) ? c.allByRange.at(range) : 0;
    std::printf("  in %-40s top-level %7lld (%.1f per layer), all %7lld (%.1f per layer)\n", range.empty() ? "(no range)" : range.c_str(),
                k, k / per, all, all / per);
  }
  std::vector<std::pair<long long, std::string>> names;
  for (const auto& [name, k] : c.byName) names.emplace_back(k, name);
  std::sort(names.rbegin(), names.rend());
  for (int i = 0; i < top && i < static_cast<int>(names.size()); ++i)
    std::printf("  %-40s %8lld  (%.1f per layer)\n", names[i].second.c_str(), names[i].first, names[i].first / per);
}

}  // namespace mechscope::bench
