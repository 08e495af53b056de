#pragma once
// The attention-map widget: a QCustomPlot with query rows / key columns, token labels on both axes,
// masked upper triangle, colour bar, hover read-out, and level-of-detail rendering so 8K × 8K matrices
// pan and zoom at screen resolution (only the visible window, pooled to about one block per pixel).
#include <QJsonObject>
#include <QWidget>

#include <memory>

#include "views/color_scale.hpp"
#include "views/heatmap_data.hpp"
#include "views/heatmap_display.hpp"
#include "views/heatmap_pyramid.hpp"
#include "views/plot_theme.hpp"

class QCustomPlot;
class QCPColorScale;
class QCPTextElement;
class QCPRange;
class QMouseEvent;

namespace mechscope::views {

class ColorImageLayer;
class TokenTicker;

/// A cell of a heatmap (row = query, col = key); -1/-1 when none.
struct HeatmapCell {
  int row = -1, col = -1;
  /// Whether this names a cell.
  bool valid() const { return row >= 0 && col >= 0; }
};

/// Heatmap widget over plain values; pan with drag/arrows, zoom with wheel/+/-, Home resets.
class HeatmapView : public QWidget {
  Q_OBJECT
 public:
  /// An empty heatmap.
  explicit HeatmapView(QWidget* parent = nullptr);
  ~HeatmapView() override;

  /// Shows `data` (moved in; 8K × 8K is fine) and resets the view; throws InputError if inconsistent.
  void setData(HeatmapData data);
  /// Changes log scale / exclude-first-k / row normalisation / clipping.
  void setOptions(const HeatmapOptions& options);
  /// How aggregated levels pool blocks (max by default: a single strong cell stays visible).
  void setPoolMode(PoolMode mode);
  /// Overrides the palette-derived theme.
  void setTheme(const PlotTheme& theme);

  /// The data shown.
  const HeatmapData& data() const { return m_data; }
  /// The display options.
  const HeatmapOptions& options() const { return m_options; }
  /// The pooling mode of aggregated levels.
  PoolMode poolMode() const { return m_pyramid.mode(); }
  /// Colour range and note of the values shown.
  const HeatmapDisplay& display() const { return m_display; }
  /// The level-of-detail pyramid (level 0 = display values).
  const HeatmapPyramid& pyramid() const { return m_pyramid; }
  /// The colour scale in use.
  const ColorScale& colorScale() const { return m_scale; }
  /// The QCustomPlot inside (for export and styling).
  QCustomPlot* plot() const { return m_plot; }

  /// The cell under `pixel` (QCustomPlot widget coordinates), invalid outside the matrix.
  HeatmapCell cellAt(const QPointF& pixel) const;
  /// The centre of cell (row, col) in QCustomPlot widget coordinates.
  QPointF cellCenter(int row, int col) const;
  /// Display value of a cell after the options (NaN when masked or excluded).
  double displayValue(int row, int col) const;
  /// Raw value of a cell.
  double rawValue(int row, int col) const;

  /// Pyramid level drawn at the last paint (0 = full resolution).
  int displayedLevel() const { return m_shownLevel; }
  /// Number of (pooled) cells visible at the last paint; the image holds a margin of ¼ view around them.
  QSize displayedCells() const { return m_shownCells; }
  /// "aggregated k×k (max)" while an aggregated level is shown, empty otherwise.
  QString aggregationText() const;

  /// Shows the whole matrix.
  void resetView();
  /// Shows columns [colLow, colHigh] and rows [rowLow, rowHigh] (cell coordinates, clamped).
  void setVisibleWindow(double colLow, double colHigh, double rowLow, double rowHigh);
  /// Pans by a number of cells (positive = right / down).
  void panBy(double cols, double rows);
  /// Zooms by `factor` (> 1 = in) around the centre of the visible window.
  void zoomBy(double factor);

  /// The numbers drawn (display values of the visible window at full resolution, labels, range, options)
  /// for figure sidecars.
  QJsonObject plottedNumbers() const;

 signals:
  /// The mouse is over a visible cell (raw value).
  void cellHovered(int row, int col, double value);
  /// A cell was clicked (press and release without dragging).
  void cellClicked(int row, int col);

 protected:
  void keyPressEvent(QKeyEvent* event) override;
  void changeEvent(QEvent* event) override;

 private:
  void rebuild();
  void refreshImage(QSize axisPixels);
  void updateTicks();
  void clampRanges();
  void onMouseMove(QMouseEvent* event);
  void onMousePress(QMouseEvent* event);
  void onMouseRelease(QMouseEvent* event);
  QString hoverText(const HeatmapCell& cell) const;
  void styleAll();

  QCustomPlot* m_plot = nullptr;
  QCPColorScale* m_colorBar = nullptr;
  QCPTextElement* m_title = nullptr;
  ColorImageLayer* m_layer = nullptr;
  QSharedPointer<TokenTicker> m_xTicker, m_yTicker;
  HeatmapData m_data;
  HeatmapOptions m_options;
  HeatmapDisplay m_display;  // values moved into the pyramid
  HeatmapPyramid m_pyramid;
  ColorScale m_scale;
  PlotTheme m_theme;
  bool m_themeSet = false;
  bool m_clamping = false;
  quint64 m_generation = 0;
  struct Window {
    quint64 generation = ~0ull;
    int level = -1, c0 = 0, c1 = 0, r0 = 0, r1 = 0;
    bool operator==(const Window&) const = default;
  } m_window;
  int m_shownLevel = 0;
  QSize m_shownCells;
  HeatmapCell m_hover;
  QPoint m_pressPos;
  bool m_pressed = false;
};

}  // namespace mechscope::views
