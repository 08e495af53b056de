#pragma once
// Plain values a heatmap shows (no tensors): the app layer converts patterns into these.
#include <QString>
#include <QStringList>

#include <cmath>
#include <vector>

namespace mechscope::views {

/// One matrix to show as a heatmap, e.g. one head's attention pattern.
struct HeatmapData {
  int rows = 0, cols = 0;
  std::vector<float> values;  // row-major [rows, cols]
  QStringList rowLabels, colLabels;  // token strings; may be empty (indices are shown)
  QString title, rowAxis = "query", colAxis = "key", valueLabel = "attention";
  bool causal = true;         // mask the upper triangle (key > query)
  int firstRow = 0;           // query position of row 0 when only the last queries are shown: the causal
                              // mask is key > firstRow + row, and hover/labels show firstRow + row
  bool signedValues = false;  // diverging colour map centred at 0
};

/// Display switches of a heatmap; none of them changes the data.
struct HeatmapOptions {
  bool logScale = false;
  int excludeFirstK = 0;      // hide keys 0..k-1 (attention sinks dominate the colour range)
  bool rowNormalise = false;  // scale every row by its max |value| so each query spans the full range
  double clipLow = NAN, clipHigh = NAN;  // colour range; NaN = fitted to the data shown
};

/// How a level of detail aggregates a k×k block of cells.
enum class PoolMode { Max, Mean };

}  // namespace mechscope::views
