// The batch planner validates plans against the analysis table; the plugins' entries (sinks, waad-fai, …)
// are registered at start-up by the analysis library, as mechscope-cli does before it plans. The planner
// itself stays torch-free (app/batch); only this test program links the analysis library to see the real table.
#include "analysis/common/analysis_plugin.hpp"

namespace {
const bool kPluginsInstalled = (mechscope::analysis::installAnalysisPlugins(), true);
}  // namespace
