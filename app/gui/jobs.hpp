#pragma once
// The workbench's jobs: each submits work to the JobRunner and delivers its values into the Workspace on
// the GUI thread. Returns the job id (watch JobRunner's finished/failed/cancelled for it).
#include <QString>

#include <filesystem>
#include <vector>

#include "app/gui/head_patching.hpp"
#include "app/gui/job_runner.hpp"
#include "app/gui/workspace.hpp"

namespace mechscope::gui {

/// Loads a model folder (or, with an empty folder and `embedded`, the embedded planted model).
int submitOpenModel(Workspace& ws, JobRunner& jobs, const QString& folder, const LoadOptions& options, bool embedded = false);
/// Forward pass over the workspace's tokens, caching every layer's pattern.
int submitComputePatterns(Workspace& ws, JobRunner& jobs);
/// Builds the patching pair (clean/corrupted runs cached).
int submitBuildPatching(Workspace& ws, JobRunner& jobs, std::vector<int64_t> clean, std::vector<int64_t> corrupt,
                        int64_t answer, int64_t incorrect);
/// Writes the workspace's tokens and patterns to an HDF5 cache in the CLI's schema.
int submitSaveCache(Workspace& ws, JobRunner& jobs, const QString& path);

/// Defaults for the patching panel: an IOI pair of the planted model's task set.
struct PatchingDefaults {
  QString clean, corrupt, answer, incorrect;
};
/// The planted IOI pair ("When Mary and John were at the store , John gave a ring to" → Mary vs John).
PatchingDefaults plantedPatchingDefaults();

}  // namespace mechscope::gui
