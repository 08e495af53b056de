#pragma once
// The analyses part of `mechscope-cli demo`: each available analysis of the registry run on the
// planted model through its own subcommand, with its result and the planted answer side by side.
#include <filesystem>

#include <nlohmann/json.hpp>

#include "core/common/run_context.hpp"

namespace mechscope::cli {

/// Runs every available analysis on the planted folder into `out`; returns what ran and where.
nlohmann::json runDemoAnalyses(const std::filesystem::path& plantedFolder, const std::filesystem::path& out,
                               const RunContext& ctx);

}  // namespace mechscope::cli
