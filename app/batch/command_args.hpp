#pragma once
// The mechscope-cli command line of a work item: the analysis' subcommand with the plan's
// parameters turned into options (tables in analysis_table.hpp). Paths of files the runner prepares
// are relative to the item's work folder (the child runs there), so outputs name no run folder.
#include <string>
#include <vector>

#include "app/batch/work_items.hpp"

namespace mechscope::batch {

/// What an item's input must be turned into before its command runs.
enum class InputPrep {
  None,          ///< the plan's files/values are passed as they are
  DatasetJsonl,  ///< write the generated IOI / Colored Objects pairs to kDatasetFile
  TokenRows,     ///< write the dataset's clean prompts as token-id rows to kTokenRowsFile (first row only for one-sequence analyses)
};

inline constexpr const char* kDatasetFile = "input.jsonl";
inline constexpr const char* kTokenRowsFile = "input_ids.json";
inline constexpr const char* kResultJson = "result.json";
inline constexpr const char* kResultH5 = "result.h5";
inline constexpr const char* kLogFile = "run.log";
inline constexpr const char* kOverlapA = "a.json";  ///< overlap: the dependency's result.json copied here
inline constexpr const char* kOverlapB = "b.json";

/// What preparation the item needs.
InputPrep inputPrep(const WorkItem& item);

/// The subcommand and options (without the executable). `modelFolder`: the model path with "embedded"
/// resolved; `withH5`: also write kResultH5 (builds with HDF5).
std::vector<std::string> commandArgs(const WorkItem& item, const std::string& modelFolder, bool withH5);

}  // namespace mechscope::batch
