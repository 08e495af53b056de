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

/// Where an analysis without a model (its table's inputFiles, e.g. overlap's a and b) finds input `key`: the
/// result.json of the item the plan's "ANALYSIS_ID@INPUT_ID" names, copied into the work folder ("a.json").
inline std::string inputFileName(const std::string& key) { return key + ".json"; }

/// What preparation the item needs.
InputPrep inputPrep(const WorkItem& item);

/// The subcommand and options (without the executable). `modelFolder`: the model path with "embedded"
/// resolved; `withH5`: also write kResultH5 (builds with HDF5).
std::vector<std::string> commandArgs(const WorkItem& item, const std::string& modelFolder, bool withH5);

}  // namespace mechscope::batch
