#pragma once
// A toy analysis written the way every new analysis is added (issue #21's acceptance check): this folder
// and one registration line (the RegisterAnalysisPlugin in toy_head_norm.cpp). It is linked only into test
// programs (mechscope-cli-toy, mechscope_tests_app), which then show it in `list`, `--help`, the GUI's
// analysis menu and batch plans without any other file naming it.
#include "analysis/common/analysis_plugin.hpp"

namespace mechscope::toy {

/// "toy-head-norm": scale × the mean over positions (and prompts) of ‖hook_z[pos, head]‖₂, per [layer][head].
analysis::AnalysisPlugin toyHeadNormPlugin();

}  // namespace mechscope::toy
