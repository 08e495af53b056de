#pragma once
// Adapters of retrieval heads and circuit overlap (ablation and circuit discovery are plugins):
// form → the analysis in analysis/ on the workspace's prompt (or patching pair) → the analysis's own
// JSON contract → grids and lines through resultFromCliJson (the same view a CLI file reopens to).
#include "app/gui/analysis_adapters.hpp"
#include "core/common/head_ref.hpp"

namespace mechscope::gui {

/// Fills `a` (name "retrieval"): one needle test on the workspace's prompt (analysis/retrieval).
void wireRetrievalAdapter(AnalysisAdapter& a);

/// Fills `a` (name "overlap"): two circuits (CLI circuit JSON files, or the workspace's last two circuit results).
void wireOverlapAdapter(AnalysisAdapter& a);

/// "a:b" → [a, b) with 0 ≤ a < b ≤ limit; InputError naming `what` otherwise.
std::pair<int64_t, int64_t> parseTokenRange(const QString& text, int64_t limit, const QString& what);
/// "3.0,3.1" → heads; InputError naming `what` for a malformed item or a head outside the model.
std::vector<HeadRef> parseHeadList(const QString& text, int layers, int heads, const QString& what);

}  // namespace mechscope::gui
