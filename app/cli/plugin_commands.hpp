#pragma once
// mechscope-cli subcommands derived from analysis plugins (see plugin_commands.cpp).
#include <CLI/CLI.hpp>

#include "analysis/common/analysis_plugin.hpp"

namespace mechscope::cli {

/// Adds the subcommand of `plugin` (options from its parameter table) to `root`.
void addPluginCommand(CLI::App& root, const analysis::AnalysisPlugin& plugin);

}  // namespace mechscope::cli
