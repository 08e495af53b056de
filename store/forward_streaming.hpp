#pragma once
// How a forward pass streams its hooks into a cache (`run --cache`, bench_forward): one place for the hooks, the
// logits streamed while they are computed, and the attention maps formed beside the forward.
#include <string>
#include <vector>

#include "core/model/hooked_transformer.hpp"
#include "store/cache_writer.hpp"

namespace mechscope::store {

/// Where a cache's attention maps are formed (streamForwardInto).
enum class MapsPlacement {
  Auto,       ///< Beside when the writer has a background queue and ≥ 2 CPUs are spare (spareCpus()), else InForward
  Beside,     ///< on the writer's second thread, from the pass's queries and keys (needs a background queue)
  InForward,  ///< in the forward, hooked, as any hook sees them (the attention then takes the explicit path)
};

/// `placement` with Auto resolved for a writer with `options`: Beside when it has a background queue and the
/// intra-op threads leave ≥ 2 CPUs idle (spareCpus()), else InForward.
MapsPlacement resolvedPlacement(MapsPlacement placement, const CacheOptions& options);

/// Adds to `hooks` and `fo` what streams every hook matching one of `patterns` (over the model's `hookNames`) into
/// `writer` during a forward:
/// - a hook per pattern that hands the tensor to CacheWriter::writeActivation;
/// - ForwardOptions::onLogitRows when unembed.hook_logits is cached (CacheWriter::writeLogitRows);
/// - placed Beside (Auto: when the writer has a background queue and the intra-op threads leave ≥ 2 CPUs idle, one
///   for the writer and one for the maps), and no hook of `hooks` already on an attention map: the cached maps
///   (attn.hook_attn_scores, attn.hook_pattern) are left unhooked and formed by ForwardOptions::onDeferredMaps on
///   the writer's second thread (CacheWriter::writeDeferredMaps), so the forward keeps its fused attention. The
///   cached maps are the values the hooks would have seen; the logits are the unhooked pass's. A layer whose two
///   maps exceed the queue's bound (long inputs) has them formed at once on the forward's thread instead, so that
///   no more than one layer's maps are alive at a time, as when the forward forms them. On a machine whose
///   cores the forward already fills, forming them apart only adds work: Auto keeps them in the forward.
/// `writer` must outlive the forward.
void streamForwardInto(CacheWriter& writer, const std::vector<std::string>& patterns, const std::vector<std::string>& hookNames,
                       ForwardOptions& fo, HookSet& hooks, MapsPlacement placement = MapsPlacement::Auto);

}  // namespace mechscope::store
