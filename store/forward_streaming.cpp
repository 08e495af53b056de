#include "store/forward_streaming.hpp"

#include <algorithm>
#include <utility>

#include <fmt/format.h>

#include "core/common/threads.hpp"

namespace mechscope::store {

namespace {

bool isAttentionMap(const std::string& name) {
  return name.ends_with(".attn.hook_attn_scores") || name.ends_with(".attn.hook_pattern");
}

}  // namespace

MapsPlacement resolvedPlacement(MapsPlacement placement, const CacheOptions& options) {
  if (placement != MapsPlacement::Auto) return placement;
  return options.backgroundBytes > 0 && spareCpus() >= 2 ? MapsPlacement::Beside : MapsPlacement::InForward;
}

void streamForwardInto(CacheWriter& writer, const std::vector<std::string>& patterns, const std::vector<std::string>& hookNames,
                       ForwardOptions& fo, HookSet& hooks, MapsPlacement placement) {
  auto cached = [patterns](const std::string& name) {
    return std::any_of(patterns.begin(), patterns.end(), [&](const std::string& g) { return HookSet::matches(g, name); });
  };
  const bool mapsHookedElsewhere =
      std::any_of(hookNames.begin(), hookNames.end(), [&](const std::string& n) { return isAttentionMap(n) && hooks.active(n); });
  const bool mapsCached = std::any_of(hookNames.begin(), hookNames.end(), [&](const std::string& n) { return isAttentionMap(n) && cached(n); });
  for (const std::string& g : patterns)
    hooks.add(g, [w = &writer](const at::Tensor& t, const HookContext& c) -> std::optional<at::Tensor> {
      w->writeActivation(c.name, t);  // streamed: nothing accumulates in memory
      return std::nullopt;
    });
  if (cached("unembed.hook_logits"))  // written block by block while the rest of the logits are computed
    fo.onLogitRows = [w = &writer](const at::Tensor& logits, int64_t begin, int64_t end) { w->writeLogitRows(logits, begin, end); };
  const bool queued = writer.options().backgroundBytes > 0;
  if (resolvedPlacement(placement, writer.options()) == MapsPlacement::InForward || !mapsCached || mapsHookedElsewhere || !queued)
    return;
  hooks.except("blocks.*.attn.hook_attn_scores").except("blocks.*.attn.hook_pattern");
  fo.onDeferredMaps = [w = &writer, cached](int layer, int64_t mapBytes, std::function<AttentionMaps()> formMaps) {
    const std::string scores = fmt::format("blocks.{}.attn.hook_attn_scores", layer);
    const std::string pattern = fmt::format("blocks.{}.attn.hook_pattern", layer);
    const bool s = cached(scores), p = cached(pattern);
    if (!s && !p) return;
    w->writeDeferredMaps(s ? scores : std::string(), p ? pattern : std::string(),
                         [form = std::move(formMaps)] {
                           AttentionMaps m = form();
                           return std::pair<at::Tensor, at::Tensor>(std::move(m.scores), std::move(m.pattern));
                         },
                         2 * mapBytes);  // both are formed
  };
}

}  // namespace mechscope::store
