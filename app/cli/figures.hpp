#pragma once
// Figures from the CLI (demo, batch): the GUI's renderer on Qt's offscreen platform when this build
// has the views; otherwise a clear "unavailable" answer so callers still write the data.
#include <map>
#include <string>
#include <vector>

namespace mechscope::cli {

/// A matrix to draw as a heatmap (attention pattern, layer × head scores).
struct FigureMatrix {
  int rows = 0, cols = 0;
  std::vector<float> values;                     ///< row-major [rows, cols]
  std::vector<std::string> rowLabels, colLabels;  ///< may be empty
  std::string title, rowAxis = "query", colAxis = "key", valueLabel = "attention";
  bool causal = true;         ///< mask key > query
  bool signedValues = false;  ///< diverging map centred at 0
  bool scoreGrid = false;     ///< draw as a layer × head score grid instead of a heatmap
};

/// Whether this build can render figures (built with the views, i.e. -DMECHSCOPE_GUI=ON).
bool figuresAvailable();
/// Writes `path` (.png/.svg/.pdf) and its sidecar JSON/CSV. Returns false with `error` set when figures
/// are unavailable or rendering failed. `provenance` keys: model, prompt, layer, head, metric, normalisation.
bool writeFigure(const FigureMatrix& m, const std::string& path, const std::map<std::string, std::string>& provenance,
                 std::string* error, double dpi = 144.0);

}  // namespace mechscope::cli
