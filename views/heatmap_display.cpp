#include "views/heatmap_display.hpp"

#include <algorithm>
#include <cmath>
#include <limits>

#include "core/common/errors.hpp"
#include "views/color_scale.hpp"

namespace mechscope::views {

void validateHeatmap(const HeatmapData& d) {
  const QString name = d.title.isEmpty() ? QString("heatmap") : QString("heatmap '%1'").arg(d.title);
  auto fail = [](const QString& msg) { throw InputError(msg.toStdString()); };
  if (d.rows < 0 || d.cols < 0) fail(QString("%1: expected non-negative rows/cols, found %2×%3").arg(name).arg(d.rows).arg(d.cols));
  const auto expected = static_cast<std::size_t>(d.rows) * static_cast<std::size_t>(d.cols);
  if (d.values.size() != expected)
    fail(QString("%1: values has %2 entries, expected rows×cols = %3×%4 = %5")
             .arg(name).arg(d.values.size()).arg(d.rows).arg(d.cols).arg(expected));
  if (d.firstRow < 0) fail(QString("%1: firstRow must be ≥ 0, found %2").arg(name).arg(d.firstRow));
  if (!d.rowLabels.isEmpty() && d.rowLabels.size() != d.rows)
    fail(QString("%1: %2 row labels for %3 rows").arg(name).arg(d.rowLabels.size()).arg(d.rows));
  if (!d.colLabels.isEmpty() && d.colLabels.size() != d.cols)
    fail(QString("%1: %2 column labels for %3 columns").arg(name).arg(d.colLabels.size()).arg(d.cols));
}

HeatmapDisplay computeHeatmapDisplay(const HeatmapData& d, const HeatmapOptions& o) {
  validateHeatmap(d);
  constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();
  HeatmapDisplay out;
  out.values = d.values;
  const int skip = std::clamp(o.excludeFirstK, 0, d.cols);
  QStringList notes;
  for (int r = 0; r < d.rows; ++r) {
    float* row = out.values.data() + static_cast<std::size_t>(r) * static_cast<std::size_t>(d.cols);
    for (int c = 0; c < skip; ++c) row[c] = kNaN;
    if (d.causal)
      for (int c = std::max(0, d.firstRow + r + 1); c < d.cols; ++c) row[c] = kNaN;
    for (int c = 0; c < d.cols; ++c)
      if (!std::isfinite(row[c])) row[c] = kNaN;
    if (o.rowNormalise) {
      float m = 0.0f;
      for (int c = 0; c < d.cols; ++c)
        if (!std::isnan(row[c])) m = std::max(m, std::abs(row[c]));
      if (m > 0.0f)
        for (int c = 0; c < d.cols; ++c) row[c] /= m;
    }
  }
  if (skip > 0) notes << (skip == 1 ? QString("first key excluded") : QString("first %1 keys excluded").arg(skip));
  if (o.rowNormalise) notes << "row-normalised";
  if (o.logScale) notes << (d.signedValues ? "symlog" : "log scale");

  const auto kind = d.signedValues ? ColorScale::Kind::Diverging : ColorScale::Kind::Sequential;
  auto [lo, hi] = ColorScale::autoRange(out.values.data(), out.values.size(), kind, o.logScale);
  const bool clipped = std::isfinite(o.clipLow) || std::isfinite(o.clipHigh);
  if (std::isfinite(o.clipLow)) lo = o.clipLow;
  if (std::isfinite(o.clipHigh)) hi = o.clipHigh;
  if (o.logScale && !d.signedValues && lo <= 0.0) lo = std::max(hi * 1e-6, std::numeric_limits<double>::min());
  if (lo > hi) std::swap(lo, hi);
  if (d.signedValues) {  // diverging maps stay symmetric so 0 is white and the colour bar is linear
    const double m = std::max(std::abs(lo), std::abs(hi));
    lo = -(m > 0.0 ? m : 1.0);
    hi = -lo;
  }
  if (clipped) notes << QString("clipped to [%1, %2]").arg(lo, 0, 'g', 3).arg(hi, 0, 'g', 3);
  out.low = lo;
  out.high = hi;
  out.note = notes.join(" · ");
  return out;
}

}  // namespace mechscope::views
