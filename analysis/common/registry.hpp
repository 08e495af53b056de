#pragma once
// AnalysisRegistry: the one table that names the analyses, so the CLI's `list`, the batch planner
// and the GUI's menu agree.
#include <string>
#include <vector>

namespace mechscope::analysis {

/// One analysis known to mechscope: its command/plan name, a one-line summary and whether it is built.
struct AnalysisInfo {
  std::string name;     ///< CLI subcommand and plan-file name, e.g. "sinks"
  std::string summary;  ///< one line for `mechscope-cli list` and menus
  bool available;       ///< false while the analysis is not implemented in this build
};

/// Every analysis, in menu order.
const std::vector<AnalysisInfo>& analysisRegistry();

}  // namespace mechscope::analysis
