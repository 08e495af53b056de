#pragma once
// Layer × head grid of per-head scores (retrieval score, sink score, patching effect...): diverging map
// centred at 0 for signed scores (blue = positive), sequential otherwise; value labels when cells are big
// enough; click a head (shift-click builds a set) to open it or patch it.
#include <QJsonObject>
#include <QStringList>
#include <QWidget>

#include <utility>
#include <vector>

#include "core/common/head_ref.hpp"
#include "views/color_scale.hpp"
#include "views/plot_theme.hpp"

class QCustomPlot;
class QCPColorScale;
class QCPTextElement;
class QCPPainter;
class QMouseEvent;

namespace mechscope::views {

class ColorImageLayer;
class TokenTicker;

/// Scores of every head of a model, row-major [layer, head]; NaN = no score. The same view serves any
/// rows × columns grid (e.g. the logit lens: layers × positions) through the axis names and labels.
struct ScoreGridData {
  int layers = 0, heads = 0;
  std::vector<double> scores;  // [layers, heads]
  QString title, valueLabel = "score";
  bool signedScores = false;
  QString rowAxis = "layer", columnAxis = "head";  ///< axis titles
  QStringList rowLabels{}, columnLabels{};        ///< tick labels (empty: the indices)
  QStringList cellLabels{};  ///< empty, or layers × heads texts drawn in the cells instead of the numbers (e.g. tokens)
};

/// (layer, head).
using HeadRef = mechscope::HeadRef;  // the one head type (core/common/head_ref.hpp, std-only)

/// The layer × head grid widget.
class ScoreGridView : public QWidget {
  Q_OBJECT
 public:
  /// An empty grid.
  explicit ScoreGridView(QWidget* parent = nullptr);
  ~ScoreGridView() override;

  /// Shows `scores` [layers, heads]; throws InputError when the size is not layers × heads.
  void setScores(int layers, int heads, std::vector<double> scores, const QString& title, bool signedScores);
  /// Same, from one struct (also sets the colour-bar label).
  void setData(ScoreGridData data);
  /// Overrides the palette-derived theme.
  void setTheme(const PlotTheme& theme);
  /// Draws numbers in cells when they fit (default on).
  void setShowValues(bool on);

  /// The scores shown.
  const ScoreGridData& data() const { return m_data; }
  /// Score of one head (NaN outside the grid).
  double score(int layer, int head) const;
  /// The colour scale in use.
  const ColorScale& colorScale() const { return m_scale; }
  /// Selected heads, sorted by (layer, head).
  std::vector<HeadRef> selectedHeads() const;
  /// Replaces the selection (out-of-range heads dropped).
  void setSelectedHeads(const std::vector<HeadRef>& heads);
  /// Empties the selection.
  void clearSelection();
  /// The head under `pixel` (QCustomPlot widget coordinates), {-1, -1} outside the grid.
  HeadRef headAt(const QPointF& pixel) const;
  /// The centre of a head's cell in QCustomPlot widget coordinates.
  QPointF headCenter(int layer, int head) const;
  /// The QCustomPlot inside (for export).
  QCustomPlot* plot() const { return m_plot; }
  /// The numbers drawn (scores as a matrix, selection) for figure sidecars.
  QJsonObject plottedNumbers() const;

 signals:
  /// A head was clicked, with the keyboard modifiers held (shift = add to / remove from the set).
  void headClicked(int layer, int head, Qt::KeyboardModifiers modifiers);
  /// The mouse is over a head.
  void headHovered(int layer, int head, double value);
  /// The selected set changed.
  void selectionChanged();

 protected:
  void changeEvent(QEvent* event) override;

 private:
  void rebuild();
  void styleAll();
  void drawOverlay(QCPPainter* painter);
  void onMouseMove(QMouseEvent* event);
  void onMousePress(QMouseEvent* event);
  void onMouseRelease(QMouseEvent* event);

  QCustomPlot* m_plot = nullptr;
  QCPColorScale* m_colorBar = nullptr;
  QCPTextElement* m_title = nullptr;
  ColorImageLayer* m_layer = nullptr;
  QSharedPointer<TokenTicker> m_xTicker, m_yTicker;
  ScoreGridData m_data;
  ColorScale m_scale;
  PlotTheme m_theme;
  bool m_themeSet = false;
  bool m_showValues = true;
  std::vector<HeadRef> m_selected;  // sorted
  HeadRef m_hover{-1, -1};
  QPoint m_pressPos;
  bool m_pressed = false;
};

}  // namespace mechscope::views
