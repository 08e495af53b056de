#pragma once
// The GUI adapter of an analysis plugin (analysis/common/analysis_plugin.hpp), derived from its table
// entry: one form field per parameter (editor, default, range and tooltip from the table; a dataset field
// first for dataset analyses), a run that prepares the plugin's inputs from the workspace (the prompt's
// tokens, or the dataset generated with the session's tokenizer) and the result drawn through
// resultFromCliJson — the same code and the same JSON as the CLI's subcommand.
#include "analysis/common/analysis_plugin.hpp"
#include "app/gui/analysis_adapters.hpp"

namespace mechscope::gui {

/// The adapter of `plugin` (which must stay registered while the adapter is used).
AnalysisAdapter pluginAdapter(const analysis::AnalysisPlugin& plugin);

/// The form's values as the plugin's parameter values (empty strings count as not given).
analysis::ParamValues pluginParamValues(const analysis::AnalysisDescriptor& d, const QJsonObject& form);

}  // namespace mechscope::gui
