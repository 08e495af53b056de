#pragma once
// The GUI's view of an analysis result in the CLI's JSON contract (the --json file, also stored as
// /analyses/<name>/result_json in the CLI's HDF5 files): which keys become layer × head score grids and
// which become per-token / per-layer line plots. Used by the panels after a run (the adapters call the
// analysis's own toResult) and when reopening a file the CLI wrote, so both show the same thing.
#include <QStringList>

#include <string>

#include <nlohmann/json.hpp>

#include "app/gui/analysis_result.hpp"

namespace mechscope::gui {

/// Converts the CLI JSON of analysis `name` ("constraint-attention", "retrieval", "ablate", "patch",
/// "circuit", "overlap", "sinks", "waad-fai"); `tokenLabels` label per-token x axes (empty: positions).
/// Scalars and head lists go to `params`; the whole JSON is kept as params["cli_json"]. InputError when
/// a grid has the wrong shape.
AnalysisResult resultFromCliJson(const std::string& name, const nlohmann::json& json, const QStringList& tokenLabels = {});

/// A result key or parameter key as a title: "first_token_mass" → "First token mass".
QString titleOf(const std::string& key);

/// The form's values join the result's params; values the analysis reported under the same key win.
void keepFormValues(AnalysisResult& r, const QJsonObject& form);

/// A [rows][cols] JSON array of numbers flattened row-major; InputError naming `what` when ragged.
std::vector<double> flattenGrid(const nlohmann::json& grid, int& rows, int& cols, const std::string& what);

}  // namespace mechscope::gui
