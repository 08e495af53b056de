#pragma once
// The batch runner: walks a shard's work items in dependency order, skips items already finished
// (record present with the same spec hash and files in place), redoes partial ones, runs the rest
// through an executor in a fresh work folder, and commits each success by a rename followed by its
// record. Qt- and torch-free: the executor (the CLI's) does the model work.
#include <filesystem>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "app/batch/output_dir.hpp"
#include "app/batch/progress.hpp"
#include "app/batch/work_items.hpp"

namespace mechscope::batch {

/// What an executor reports for one item.
struct ItemOutcome {
  bool ok = false;
  int exitCode = 0;
  std::string error;  ///< one line, for the summary
};

/// Runs one item: writes its files into `workDir` (which exists and is empty); `depDirs` maps each
/// dependency key to its finished folder.
using ItemExecutor =
    std::function<ItemOutcome(const WorkItem& item, const std::filesystem::path& workDir, const std::map<std::string, std::filesystem::path>& depDirs)>;

/// Counts of one run.
struct RunCounts {
  int ok = 0, failed = 0, skipped = 0;  ///< skipped: finished by an earlier run
  bool cancelled = false;
};

/// What the runner needs besides the items.
struct RunSettings {
  OutputDir* out = nullptr;
  nlohmann::json meta;  ///< plan.json (name, plan_hash, report, figures_available, items)
  std::optional<std::pair<int, int>> shard;
  std::function<bool()> cancelled;  ///< polled between items (the executor polls inside)
};

/// Runs `mine` (a shard of `all`) and writes plan.json, the records, summary.json and the report.
/// Returns the counts; on cancellation the summary is written and counts.cancelled is set.
RunCounts runBatch(const std::vector<WorkItem>& all, const std::vector<WorkItem>& mine, const RunSettings& settings,
                   const ItemExecutor& execute, ProgressReporter& progress);

/// Whether `key` is finished in `out` with this spec hash (record ok and result files present).
bool itemFinished(const OutputDir& out, const WorkItem& item);

}  // namespace mechscope::batch
