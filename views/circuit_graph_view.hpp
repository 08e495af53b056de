#pragma once
// A circuit as a graph (issue #22): nodes in columns (embeddings, each layer's heads, its MLP, the logits),
// edges drawn by score — blue positive, red negative, width ∝ |score|, solid/dashed/dotted for a head's
// q/k/v input — with a slider that keeps the N edges of largest |score|. Click an edge or a node to act on
// it (the GUI patches it); exported like every other figure (the QCustomPlot inside).
#include <QJsonObject>
#include <QString>
#include <QWidget>

#include <vector>

#include "core/common/head_ref.hpp"
#include "views/plot_theme.hpp"

class QCustomPlot;
class QCPTextElement;
class QLabel;
class QMouseEvent;
class QSlider;

namespace mechscope::views {

/// One node: its label and its place (column left to right, row top to bottom).
struct GraphNode {
  QString name;
  double column = 0, row = 0;
  HeadRef head{-1, -1};  ///< the attention head this node is (layer −1: none); clicking it can open its attention
};

/// One edge from node `from` to node `to` (indices into the nodes), into input `receiver` of `to`
/// ("q", "k", "v" or "" for a node with one input), with its score.
struct GraphEdge {
  int from = 0, to = 0;
  QString receiver{};
  double score = 0;
};

/// A whole graph.
struct CircuitGraphData {
  QString title, scoreLabel = "score";
  std::vector<GraphNode> nodes;
  std::vector<GraphEdge> edges;
};

/// The circuit graph widget: the plot and, below it, the slider of how many edges are shown.
class CircuitGraphView : public QWidget {
  Q_OBJECT
 public:
  /// An empty graph.
  explicit CircuitGraphView(QWidget* parent = nullptr);
  ~CircuitGraphView() override;

  /// Shows `data` with its 30 largest edges (or all, when fewer); InputError for an edge whose node
  /// index is outside the nodes, or a score that is not finite.
  void setData(CircuitGraphData data);
  /// Overrides the palette-derived theme.
  void setTheme(const PlotTheme& theme);
  /// The graph shown.
  const CircuitGraphData& data() const { return m_data; }

  /// Keeps the `n` edges of largest |score| (clamped to 0 … number of edges); moves the slider.
  void setEdgeCount(int n);
  /// How many edges are shown.
  int edgeCount() const { return m_count; }
  /// The smallest |score| shown (0 when no edge is shown).
  double threshold() const;
  /// The shown edges (indices into data().edges), largest |score| first; ties keep the data's order.
  std::vector<int> visibleEdges() const;

  /// The shown edge nearest to `pixel` (QCustomPlot widget coordinates) within 5 px, or -1.
  int edgeAt(const QPointF& pixel) const;
  /// The node whose marker holds `pixel` (within 8 px of its centre), or -1.
  int nodeAt(const QPointF& pixel) const;
  /// A node's centre in QCustomPlot widget coordinates.
  QPointF nodeCenter(int node) const;

  /// The QCustomPlot inside (for export).
  QCustomPlot* plot() const { return m_plot; }
  /// The edge-count slider.
  QSlider* slider() const { return m_slider; }
  /// The numbers drawn (nodes, shown edges with scores, threshold) for figure sidecars.
  QJsonObject plottedNumbers() const;

 signals:
  /// An edge was clicked (index into data().edges).
  void edgeClicked(int edge);
  /// A node was clicked (index into data().nodes).
  void nodeClicked(int node);
  /// The slider changed the number of edges shown.
  void edgeCountChanged(int n);

 protected:
  void changeEvent(QEvent* event) override;

 private:
  void rebuild();
  void onMousePress(QMouseEvent* event);

  QCustomPlot* m_plot = nullptr;
  QCPTextElement* m_title = nullptr;
  QSlider* m_slider = nullptr;
  QLabel* m_countLabel = nullptr;
  CircuitGraphData m_data;
  std::vector<int> m_order;  // edges by |score|, largest first
  int m_count = 0;
  PlotTheme m_theme;
  bool m_themeSet = false;
};

}  // namespace mechscope::views
