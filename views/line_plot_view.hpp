#pragma once
// Per-token line plots: several named series over token positions (WAAD and FAI traces, α(t)),
// token labels on the x axis, optional marked points (peaks), hover read-out of every series.
#include <QColor>
#include <QJsonObject>
#include <QStringList>
#include <QWidget>

#include <vector>

#include "views/plot_theme.hpp"

class QCustomPlot;
class QCPTextElement;
class QCPItemStraightLine;
class QMouseEvent;

namespace mechscope::views {

class TokenTicker;

/// One named series; x defaults to 0..n-1 (token positions).
struct LineSeries {
  QString name;
  std::vector<double> y;
  std::vector<double> x;    // empty = 0..y.size()-1
  std::vector<int> marked;  // indices into y drawn as marked points (peaks)
  QColor color;             // invalid = next colour of the theme's palette
};

/// A whole line plot.
struct LinePlotData {
  QString title, xLabel = "token", yLabel;
  QStringList xLabels;  // token strings for integer x positions (may be empty)
  std::vector<LineSeries> series;
};

/// Colour-blind-safe series colours (light or dark background).
QColor seriesColor(int index, bool darkTheme);

/// The line plot widget; drag/wheel pan and zoom the x axis, double-click resets.
class LinePlotView : public QWidget {
  Q_OBJECT
 public:
  /// An empty plot.
  explicit LinePlotView(QWidget* parent = nullptr);
  ~LinePlotView() override;

  /// Shows `data`; throws InputError when a series' x and y differ in length or a mark is out of range.
  void setData(LinePlotData data);
  /// Overrides the palette-derived theme.
  void setTheme(const PlotTheme& theme);
  /// The data shown.
  const LinePlotData& data() const { return m_data; }
  /// Shows the whole x range.
  void resetView();
  /// The nearest integer x position under `pixel` (QCustomPlot widget coordinates), -1 outside.
  int indexAt(const QPointF& pixel) const;
  /// The QCustomPlot inside (for export).
  QCustomPlot* plot() const { return m_plot; }
  /// The numbers drawn (every series' x and y, marks, labels) for figure sidecars.
  QJsonObject plottedNumbers() const;

 signals:
  /// The mouse is over x position `index`.
  void pointHovered(int index);
  /// x position `index` was clicked.
  void pointClicked(int index);

 protected:
  void changeEvent(QEvent* event) override;

 private:
  void rebuild();
  void onMouseMove(QMouseEvent* event);

  QCustomPlot* m_plot = nullptr;
  QCPTextElement* m_title = nullptr;
  QCPItemStraightLine* m_cursor = nullptr;
  QSharedPointer<TokenTicker> m_xTicker;
  LinePlotData m_data;
  PlotTheme m_theme;
  bool m_themeSet = false;
  int m_hover = -1;
  double m_xMin = 0, m_xMax = 1;
};

}  // namespace mechscope::views
