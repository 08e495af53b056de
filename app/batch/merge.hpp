#pragma once
// `mechscope-cli merge`: combines the output folders of shard runs (same plan) into one folder that
// holds what a single unsharded run writes: every item's files and record, plan.json, summary.json
// and the report.
#include <filesystem>
#include <vector>

namespace mechscope::batch {

/// Counts of a merge.
struct MergeCounts {
  int ok = 0, failed = 0, missing = 0;  ///< missing: items no shard finished or tried
};

/// Merges `shardDirs` into `outDir` (created; may be one of the shards). InputError when a folder is
/// not a batch output or the folders come from different plans.
MergeCounts mergeOutputs(const std::vector<std::filesystem::path>& shardDirs, const std::filesystem::path& outDir);

}  // namespace mechscope::batch
