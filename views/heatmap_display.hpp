#pragma once
// The values a heatmap actually colours: the data after masking, exclude-first-k, row normalisation,
// and the colour range fitted (or clipped) to them. Pure function of (data, options): testable alone.
#include <QString>

#include <vector>

#include "views/heatmap_data.hpp"

namespace mechscope::views {

/// Display values [rows, cols] (NaN = masked or excluded) and their colour range.
struct HeatmapDisplay {
  std::vector<float> values;  // [rows, cols]
  double low = 0.0, high = 1.0;  // colour range (after clipping options)
  QString note;  // what was done to the numbers, e.g. "first 1 key excluded · row-normalised"
};

/// Checks `data` (sizes, labels); throws InputError naming the heatmap when inconsistent.
void validateHeatmap(const HeatmapData& data);
/// Applies `options` to `data` (see HeatmapOptions); throws InputError on inconsistent data.
HeatmapDisplay computeHeatmapDisplay(const HeatmapData& data, const HeatmapOptions& options);

}  // namespace mechscope::views
