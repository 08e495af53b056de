#pragma once
// Adapters of the attention analyses that have landed in analysis/ (sinks, WAAD/FAI): form → run on the
// workspace's prompt → score grids and per-token line plots.
#include "app/gui/analysis_adapters.hpp"

namespace mechscope::gui {

/// Fills `a` (name "sinks") with the form and run function of analysis/sinks.
void wireSinksAdapter(AnalysisAdapter& a);
/// Fills `a` (name "waad-fai") with the form and run function of analysis/waad_fai.
void wireWaadFaiAdapter(AnalysisAdapter& a);

}  // namespace mechscope::gui
