#include "views/heatmap_pyramid.hpp"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>

namespace mechscope::views {
namespace {

constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();

// Halves `src` ([rows, cols], with per-cell counts of the level-0 cells behind each value for means).
PyramidLevel halve(const PyramidLevel& src, const std::vector<std::uint32_t>& counts, std::vector<std::uint32_t>& outCounts,
                   PoolMode mode) {
  PyramidLevel out;
  out.factor = src.factor * 2;
  out.rows = (src.rows + 1) / 2;
  out.cols = (src.cols + 1) / 2;
  const auto n = static_cast<std::size_t>(out.rows) * static_cast<std::size_t>(out.cols);
  out.values.assign(n, kNaN);
  if (mode == PoolMode::Mean) outCounts.assign(n, 0);
  for (int r = 0; r < out.rows; ++r) {
    const int r0 = 2 * r, r1 = std::min(2 * r + 2, src.rows);
    for (int c = 0; c < out.cols; ++c) {
      const int c0 = 2 * c, c1 = std::min(2 * c + 2, src.cols);
      float best = -std::numeric_limits<float>::infinity();
      double sum = 0.0;
      std::uint32_t count = 0;
      bool any = false;
      for (int rr = r0; rr < r1; ++rr) {
        for (int cc = c0; cc < c1; ++cc) {
          const std::size_t k = static_cast<std::size_t>(rr) * static_cast<std::size_t>(src.cols) + static_cast<std::size_t>(cc);
          const float v = src.values[k];
          if (std::isnan(v)) continue;
          any = true;
          if (mode == PoolMode::Max) {
            best = std::max(best, v);
          } else {
            const std::uint32_t w = counts.empty() ? 1u : counts[k];
            sum += static_cast<double>(v) * w;
            count += w;
          }
        }
      }
      const std::size_t o = static_cast<std::size_t>(r) * static_cast<std::size_t>(out.cols) + static_cast<std::size_t>(c);
      if (!any) continue;
      if (mode == PoolMode::Max) {
        out.values[o] = best;
      } else {
        out.values[o] = static_cast<float>(sum / count);
        outCounts[o] = count;
      }
    }
  }
  return out;
}

}  // namespace

void HeatmapPyramid::build(std::vector<float> values, int rows, int cols, PoolMode mode) {
  m_levels.clear();
  m_mode = mode;
  if (rows <= 0 || cols <= 0) return;
  PyramidLevel base;
  base.rows = rows;
  base.cols = cols;
  base.values = std::move(values);
  m_levels.push_back(std::move(base));
  std::vector<std::uint32_t> counts, next;  // empty counts = 1 per cell (level 0)
  while (m_levels.back().rows > 1 || m_levels.back().cols > 1) {
    PyramidLevel up = halve(m_levels.back(), counts, next, mode);
    counts.swap(next);
    m_levels.push_back(std::move(up));
  }
}

int HeatmapPyramid::levelFor(double cellsPerPixel) const {
  // At most one block per pixel (5 % slack for rounding): drawing more would let nearest-neighbour
  // scaling drop cells, and a single strong cell must never disappear from a max-pooled view.
  int level = 0;
  while (level + 1 < levelCount() && cellsPerPixel / m_levels[static_cast<std::size_t>(level)].factor > 1.05) ++level;
  return level;
}

PyramidLevel poolDirect(const std::vector<float>& values, int rows, int cols, int factor, PoolMode mode) {
  PyramidLevel out;
  out.factor = factor;
  out.rows = (rows + factor - 1) / factor;
  out.cols = (cols + factor - 1) / factor;
  out.values.assign(static_cast<std::size_t>(out.rows) * static_cast<std::size_t>(out.cols), kNaN);
  for (int r = 0; r < out.rows; ++r) {
    for (int c = 0; c < out.cols; ++c) {
      double best = -std::numeric_limits<double>::infinity(), sum = 0.0;
      long count = 0;
      for (int rr = r * factor; rr < std::min((r + 1) * factor, rows); ++rr) {
        for (int cc = c * factor; cc < std::min((c + 1) * factor, cols); ++cc) {
          const float v = values[static_cast<std::size_t>(rr) * static_cast<std::size_t>(cols) + static_cast<std::size_t>(cc)];
          if (std::isnan(v)) continue;
          best = std::max(best, static_cast<double>(v));
          sum += v;
          ++count;
        }
      }
      if (count == 0) continue;
      out.values[static_cast<std::size_t>(r) * static_cast<std::size_t>(out.cols) + static_cast<std::size_t>(c)] =
          static_cast<float>(mode == PoolMode::Max ? best : sum / static_cast<double>(count));
    }
  }
  return out;
}

}  // namespace mechscope::views
