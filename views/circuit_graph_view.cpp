#include "views/circuit_graph_view.hpp"

#include <qcustomplot.h>

#include <QJsonArray>
#include <QLabel>
#include <QSlider>

#include <algorithm>
#include <cmath>
#include <numeric>

#include "core/common/errors.hpp"

namespace mechscope::views {

namespace {

constexpr int kDefaultEdges = 30;
constexpr double kNodeHitPx = 8, kEdgeHitPx = 5;

/// Distance from `p` to the segment a–b (all in pixels).
double segmentDistance(const QPointF& p, const QPointF& a, const QPointF& b) {
  const QPointF ab = b - a, ap = p - a;
  const double len2 = QPointF::dotProduct(ab, ab);
  const double t = len2 > 0 ? std::clamp(QPointF::dotProduct(ap, ab) / len2, 0.0, 1.0) : 0.0;
  const QPointF d = p - (a + t * ab);
  return std::hypot(d.x(), d.y());
}

Qt::PenStyle receiverStyle(const QString& receiver) {
  if (receiver == "k") return Qt::DashLine;
  if (receiver == "v") return Qt::DotLine;
  return Qt::SolidLine;
}

}  // namespace

CircuitGraphView::CircuitGraphView(QWidget* parent) : QWidget(parent), m_theme(PlotTheme::fromPalette(palette())) {
  setMinimumSize(260, 220);
  auto* layout = new QVBoxLayout(this);
  layout->setContentsMargins(0, 0, 0, 0);
  m_plot = new QCustomPlot(this);
  layout->addWidget(m_plot, 1);
  m_plot->yAxis->setRangeReversed(true);  // row 0 at the top
  for (QCPAxis* a : {m_plot->xAxis, m_plot->yAxis}) {
    a->setVisible(false);
    a->grid()->setVisible(false);
  }
  m_plot->plotLayout()->insertRow(0);
  m_title = new QCPTextElement(m_plot, QString(), m_theme.titleFont);
  m_plot->plotLayout()->addElement(0, 0, m_title);

  auto* row = new QHBoxLayout;
  m_countLabel = new QLabel(this);
  m_slider = new QSlider(Qt::Horizontal, this);
  m_slider->setToolTip("edges shown: the N of largest |score|");
  row->addWidget(new QLabel("Edges", this));
  row->addWidget(m_slider, 1);
  row->addWidget(m_countLabel);
  layout->addLayout(row);
  connect(m_slider, &QSlider::valueChanged, this, [this](int n) {
    if (n == m_count) return;
    m_count = n;
    rebuild();
    emit edgeCountChanged(n);
  });
  connect(m_plot, &QCustomPlot::mousePress, this, &CircuitGraphView::onMousePress);
  applyPlotTheme(m_plot, m_theme);
  rebuild();
}

CircuitGraphView::~CircuitGraphView() = default;

void CircuitGraphView::setData(CircuitGraphData data) {
  const int n = static_cast<int>(data.nodes.size());
  for (const auto& e : data.edges) {
    if (e.from < 0 || e.from >= n || e.to < 0 || e.to >= n)
      throw InputError(QString("circuit graph '%1': an edge joins node %2 to node %3, but there are %4 nodes")
                           .arg(data.title).arg(e.from).arg(e.to).arg(n).toStdString());
    if (!std::isfinite(e.score))
      throw InputError(QString("circuit graph '%1': the edge %2 → %3 has no finite score")
                           .arg(data.title, data.nodes[static_cast<std::size_t>(e.from)].name, data.nodes[static_cast<std::size_t>(e.to)].name)
                           .toStdString());
  }
  m_data = std::move(data);
  m_order.resize(m_data.edges.size());
  std::iota(m_order.begin(), m_order.end(), 0);
  std::stable_sort(m_order.begin(), m_order.end(), [this](int a, int b) {
    return std::abs(m_data.edges[static_cast<std::size_t>(a)].score) > std::abs(m_data.edges[static_cast<std::size_t>(b)].score);
  });
  const int total = static_cast<int>(m_order.size());
  m_count = std::min(kDefaultEdges, total);
  const QSignalBlocker block(m_slider);
  m_slider->setRange(0, total);
  m_slider->setValue(m_count);
  rebuild();
}

void CircuitGraphView::setTheme(const PlotTheme& theme) {
  m_theme = theme;
  m_themeSet = true;
  applyPlotTheme(m_plot, m_theme);
  rebuild();
}

void CircuitGraphView::changeEvent(QEvent* event) {
  if (event->type() == QEvent::PaletteChange && !m_themeSet) {
    m_theme = PlotTheme::fromPalette(palette());
    applyPlotTheme(m_plot, m_theme);
    rebuild();
  }
  QWidget::changeEvent(event);
}

void CircuitGraphView::setEdgeCount(int n) {
  n = std::clamp(n, 0, static_cast<int>(m_order.size()));
  m_slider->setValue(n);  // rebuilds and signals through valueChanged when it changes
}

double CircuitGraphView::threshold() const {
  return m_count > 0 ? std::abs(m_data.edges[static_cast<std::size_t>(m_order[static_cast<std::size_t>(m_count - 1)])].score) : 0.0;
}

std::vector<int> CircuitGraphView::visibleEdges() const { return {m_order.begin(), m_order.begin() + m_count}; }

QPointF CircuitGraphView::nodeCenter(int node) const {
  const auto& n = m_data.nodes.at(static_cast<std::size_t>(node));
  return {m_plot->xAxis->coordToPixel(n.column), m_plot->yAxis->coordToPixel(n.row)};
}

int CircuitGraphView::nodeAt(const QPointF& pixel) const {
  int best = -1;
  double bestD = kNodeHitPx;
  for (int i = 0; i < static_cast<int>(m_data.nodes.size()); ++i) {
    const QPointF d = nodeCenter(i) - pixel;
    const double dist = std::hypot(d.x(), d.y());
    if (dist <= bestD) best = i, bestD = dist;
  }
  return best;
}

int CircuitGraphView::edgeAt(const QPointF& pixel) const {
  int best = -1;
  double bestD = kEdgeHitPx;
  for (int e : visibleEdges()) {
    const auto& edge = m_data.edges[static_cast<std::size_t>(e)];
    const double dist = segmentDistance(pixel, nodeCenter(edge.from), nodeCenter(edge.to));
    if (dist <= bestD) best = e, bestD = dist;
  }
  return best;
}

void CircuitGraphView::onMousePress(QMouseEvent* event) {
  const QPointF p = event->position();
  if (const int node = nodeAt(p); node >= 0) emit nodeClicked(node);
  else if (const int edge = edgeAt(p); edge >= 0) emit edgeClicked(edge);
}

void CircuitGraphView::rebuild() {
  m_plot->clearItems();
  m_plot->clearGraphs();
  setPlotTitle(m_plot, m_title, m_data.title);
  m_title->setFont(m_theme.titleFont);
  m_title->setTextColor(m_theme.foreground);
  m_countLabel->setText(QString("%1 of %2 (|%3| ≥ %4)").arg(m_count).arg(m_order.size()).arg(m_data.scoreLabel).arg(threshold(), 0, 'g', 3));
  if (m_data.nodes.empty()) {
    m_plot->replot();
    return;
  }
  double x0 = 1e300, x1 = -1e300, y0 = 1e300, y1 = -1e300;
  for (const auto& n : m_data.nodes) {
    x0 = std::min(x0, n.column), x1 = std::max(x1, n.column);
    y0 = std::min(y0, n.row), y1 = std::max(y1, n.row);
  }
  m_plot->xAxis->setRange(x0 - 0.6, x1 + 0.6);
  m_plot->yAxis->setRange(y0 - 0.8, y1 + 0.8);

  const std::vector<int> shown = visibleEdges();
  const double maxAbs = shown.empty() ? 1.0 : std::max(1e-300, std::abs(m_data.edges[static_cast<std::size_t>(shown.front())].score));
  std::vector<bool> touched(m_data.nodes.size(), false);
  const QColor positive(0x21, 0x66, 0xac), negative(0xb2, 0x18, 0x2b);  // the diverging scale's ends: blue = positive
  for (auto it = shown.rbegin(); it != shown.rend(); ++it) {  // the largest drawn last, on top
    const auto& e = m_data.edges[static_cast<std::size_t>(*it)];
    touched[static_cast<std::size_t>(e.from)] = touched[static_cast<std::size_t>(e.to)] = true;
    auto* line = new QCPItemLine(m_plot);
    line->start->setCoords(m_data.nodes[static_cast<std::size_t>(e.from)].column, m_data.nodes[static_cast<std::size_t>(e.from)].row);
    line->end->setCoords(m_data.nodes[static_cast<std::size_t>(e.to)].column, m_data.nodes[static_cast<std::size_t>(e.to)].row);
    QPen pen(e.score >= 0 ? positive : negative, 0.6 + 3.4 * std::abs(e.score) / maxAbs, receiverStyle(e.receiver));
    line->setPen(pen);
    line->setAntialiased(true);
  }
  for (int active = 0; active < 2; ++active) {  // idle nodes muted, nodes with a shown edge in the foreground colour
    QVector<double> xs, ys;
    for (std::size_t i = 0; i < m_data.nodes.size(); ++i)
      if (touched[i] == (active == 1)) xs << m_data.nodes[i].column, ys << m_data.nodes[i].row;
    QCPGraph* g = m_plot->addGraph();
    g->setLineStyle(QCPGraph::lsNone);
    const QColor c = active ? m_theme.foreground : m_theme.muted;
    g->setScatterStyle(QCPScatterStyle(QCPScatterStyle::ssCircle, c, active ? m_theme.background : c, 9));
    g->setData(xs, ys);
  }
  for (std::size_t i = 0; i < m_data.nodes.size(); ++i) {
    if (!touched[i]) continue;
    auto* label = new QCPItemText(m_plot);
    label->position->setCoords(m_data.nodes[i].column, m_data.nodes[i].row);
    label->setPositionAlignment(Qt::AlignHCenter | Qt::AlignBottom);
    label->setPadding(QMargins(0, 0, 0, 7));
    label->setText(m_data.nodes[i].name);
    label->setFont(m_theme.smallFont);
    label->setColor(m_theme.foreground);
  }
  m_plot->replot();
}

QJsonObject CircuitGraphView::plottedNumbers() const {
  QJsonArray nodes, edges;
  for (const auto& n : m_data.nodes) nodes.append(QJsonObject{{"name", n.name}, {"column", n.column}, {"row", n.row}});
  for (int e : visibleEdges()) {
    const auto& edge = m_data.edges[static_cast<std::size_t>(e)];
    edges.append(QJsonObject{{"from", m_data.nodes[static_cast<std::size_t>(edge.from)].name},
                             {"to", m_data.nodes[static_cast<std::size_t>(edge.to)].name},
                             {"receiver", edge.receiver},
                             {"score", edge.score}});
  }
  return QJsonObject{{"title", m_data.title}, {"score_label", m_data.scoreLabel}, {"nodes", nodes}, {"edges", edges},
                     {"edges_total", static_cast<int>(m_data.edges.size())}, {"threshold", threshold()}};
}

}  // namespace mechscope::views
