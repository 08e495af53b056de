#pragma once
// The values an analysis panel shows (score grids, line plots, circuit graphs) with its parameters and provenance,
// and their round trip through an HDF5 file (/analyses/<name>/..., the CLI's schema).
#include <QJsonObject>
#include <QString>

#include <vector>

#include "views/circuit_graph_view.hpp"
#include "views/line_plot_view.hpp"
#include "views/score_grid_view.hpp"

namespace mechscope::gui {

/// One finished analysis as plain values.
struct AnalysisResult {
  QString analysis;                       ///< registry name, e.g. "patch"
  QString model, prompt;                  ///< provenance
  QJsonObject params;                     ///< the form's values
  std::vector<views::ScoreGridData> grids;  ///< layer × head score grids
  std::vector<views::LinePlotData> lines;   ///< per-token traces
  std::vector<views::CircuitGraphData> graphs;  ///< circuit graphs (edge attribution)
};

/// The result as JSON (every number kept).
QJsonObject resultToJson(const AnalysisResult& result);
/// Back from JSON; InputError naming `source` when malformed.
AnalysisResult resultFromJson(const QJsonObject& json, const QString& source);

/// Writes results into a new HDF5 file: each grid as /analyses/<name>/<grid i> [layers, heads] float64 and
/// the whole result as /analyses/<name>/gui_result (JSON). InputError when the file cannot be written.
void saveResults(const QString& path, const std::vector<AnalysisResult>& results, const QString& modelFolder);
/// Reads every /analyses/*/gui_result of a file written by saveResults; InputError for a broken file.
std::vector<AnalysisResult> loadResults(const QString& path);

}  // namespace mechscope::gui
