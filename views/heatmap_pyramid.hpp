#pragma once
// Level-of-detail pyramid of a heatmap: level i pools 2^i × 2^i blocks (max or mean over the cells that
// are not NaN; NaN marks masked cells). Lets an 8K × 8K matrix pan at screen resolution.
#include <cstddef>
#include <vector>

#include "views/heatmap_data.hpp"

namespace mechscope::views {

/// One level: `factor` × `factor` blocks of the full matrix, row-major [rows, cols]; edge blocks are partial.
struct PyramidLevel {
  int factor = 1;
  int rows = 0, cols = 0;
  std::vector<float> values;  // [rows, cols], NaN where every cell of the block is masked
};

/// Max- or mean-pooled levels of one matrix; level 0 is the matrix itself.
class HeatmapPyramid {
 public:
  /// Builds every level down to 1 × 1 from `values` [rows, cols] (copied into level 0).
  void build(std::vector<float> values, int rows, int cols, PoolMode mode);
  /// Drops all levels.
  void clear() { m_levels.clear(); }

  /// Number of levels (0 when empty).
  int levelCount() const { return static_cast<int>(m_levels.size()); }
  /// Level `i` (0 = full resolution).
  const PyramidLevel& level(int i) const { return m_levels.at(static_cast<std::size_t>(i)); }
  /// How the levels were pooled.
  PoolMode mode() const { return m_mode; }
  /// The finest level that puts at most one block on a pixel when `cellsPerPixel` level-0 cells share
  /// one (5 % slack), so no cell is dropped by scaling.
  int levelFor(double cellsPerPixel) const;

 private:
  std::vector<PyramidLevel> m_levels;
  PoolMode m_mode = PoolMode::Max;
};

/// Brute-force pooling of `factor` × `factor` blocks straight from level 0 (reference for tests).
PyramidLevel poolDirect(const std::vector<float>& values, int rows, int cols, int factor, PoolMode mode);

}  // namespace mechscope::views
