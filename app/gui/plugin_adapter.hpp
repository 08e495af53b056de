#pragma once
// The GUI adapter of an analysis plugin (analysis/common/analysis_plugin.hpp), derived from its table
// entry: one form field per parameter (editor, default, range and tooltip from the table; a dataset field
// first for dataset analyses), a run that prepares the plugin's inputs from the workspace (the prompt's
// tokens, or the dataset generated with the session's tokenizer) and the result drawn through
// resultFromCliJson — the same code and the same JSON as the CLI's subcommand.
#include "analysis/common/analysis_plugin.hpp"
#include "analysis/common/datasets.hpp"
#include "app/gui/analysis_adapters.hpp"

namespace mechscope::gui {

/// The adapter of `plugin` (which must stay registered while the adapter is used).
AnalysisAdapter pluginAdapter(const analysis::AnalysisPlugin& plugin);

/// The Patching panel's clean/corrupted pair as a one-prompt dataset (role END = the last position), what a
/// dataset analysis runs on when its dataset field is empty; InputError when no pair has been run.
analysis::CausalDataset pairDataset(const AnalysisInput& in, const std::string& name);

/// The dataset a dataset analysis's form names: its "dataset" field (ioi, colored-objects or a JSONL file,
/// with "n" and "corruption"), generated with the session's tokenizer; empty: pairDataset. InputError
/// without a model or for a bad dataset.
analysis::CausalDataset formDataset(const AnalysisInput& in, const QJsonObject& form, const std::string& name);

/// The form's values as the plugin's parameter values (empty strings count as not given).
analysis::ParamValues pluginParamValues(const analysis::AnalysisDescriptor& d, const QJsonObject& form);

}  // namespace mechscope::gui
