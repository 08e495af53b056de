#pragma once
// Attention explorer: layer/head pickers, all heads of the layer as small multiples, one large heatmap
// with the display switches (log scale, exclude first k, row normalisation, clipping), hover read-out.
#include <QWidget>

#include "app/gui/workspace.hpp"
#include "views/figure_export.hpp"

class QCheckBox;
class QDoubleSpinBox;
class QLabel;
class QSpinBox;

namespace mechscope::views {
class HeadGridView;
class HeatmapView;
}  // namespace mechscope::views

namespace mechscope::gui {

/// The attention explorer.
class AttentionExplorer : public QWidget {
  Q_OBJECT
 public:
  /// An explorer over `ws`.
  explicit AttentionExplorer(Workspace* ws, QWidget* parent = nullptr);

  /// Shows head (layer, head) (clamped; no-op without patterns).
  void showHead(int layer, int head);
  /// Current layer / head.
  int layer() const;
  int head() const;
  /// The big heatmap.
  views::HeatmapView* heatmap() const { return m_heatmap; }
  /// The small multiples.
  views::HeadGridView* headGrid() const { return m_grid; }
  /// The hover line.
  QString hoverText() const;
  /// Provenance of the shown heatmap.
  views::FigureProvenance provenance() const;

 private:
  void refreshPatterns();
  void refreshHead();
  void applyOptions();
  Workspace* m_ws;
  QSpinBox* m_layer = nullptr;
  QSpinBox* m_head = nullptr;
  QCheckBox* m_log = nullptr;
  QSpinBox* m_exclude = nullptr;
  QCheckBox* m_rowNorm = nullptr;
  QCheckBox* m_clip = nullptr;
  QDoubleSpinBox* m_clipHigh = nullptr;
  QLabel* m_hover = nullptr;
  QLabel* m_empty = nullptr;
  views::HeadGridView* m_grid = nullptr;
  views::HeatmapView* m_heatmap = nullptr;
};

}  // namespace mechscope::gui
