#pragma once
// summary.json and report.md/html of a batch output folder, built only from the plan's items and
// the items' records, so a merged folder's summary equals a single run's (timings aside).
#include <filesystem>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "app/batch/output_dir.hpp"
#include "app/batch/work_items.hpp"

namespace mechscope::batch {

/// A few numbers of an analysis' result JSON worth reading in the summary (top heads, metrics).
nlohmann::json headline(const std::string& type, const nlohmann::json& result);

/// The files of a finished item, relative to the output folder: {h5, json, log, figures: [...]}.
nlohmann::json itemFiles(const OutputDir& out, const std::string& key);

/// summary.json: `meta` (plan.json without the items), one entry per item with its record (status
/// "pending" without one), counts. `shard`: {I, N} for a shard's own summary.
nlohmann::json buildSummary(const nlohmann::json& meta, const std::vector<WorkItem>& items, const OutputDir& out,
                            const std::optional<std::pair<int, int>>& shard);

/// Writes summary.json and report.md (or report.html when meta.report is "html") into the folder.
void writeSummaryAndReport(const nlohmann::json& summary, const OutputDir& out);

}  // namespace mechscope::batch
