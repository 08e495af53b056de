#include "views/score_grid_view.hpp"

#include <qcustomplot.h>

#include <QJsonArray>
#include <QToolTip>

#include <algorithm>
#include <cmath>

#include "core/common/errors.hpp"
#include "views/color_image_layer.hpp"
#include "views/token_ticker.hpp"

namespace mechscope::views {

ScoreGridView::ScoreGridView(QWidget* parent) : QWidget(parent), m_theme(PlotTheme::fromPalette(palette())) {
  setMinimumSize(200, 160);
  auto* layout = new QVBoxLayout(this);
  layout->setContentsMargins(0, 0, 0, 0);
  m_plot = new QCustomPlot(this);
  m_plot->setMouseTracking(true);
  layout->addWidget(m_plot);
  m_plot->yAxis->setRangeReversed(true);  // layer 0 at the top
  m_xTicker = QSharedPointer<TokenTicker>::create();
  m_yTicker = QSharedPointer<TokenTicker>::create();
  m_plot->xAxis->setTicker(m_xTicker);
  m_plot->yAxis->setTicker(m_yTicker);
  m_plot->xAxis->grid()->setVisible(false);
  m_plot->yAxis->grid()->setVisible(false);
  m_plot->xAxis->setLabel("head");
  m_plot->yAxis->setLabel("layer");

  m_plot->plotLayout()->insertRow(0);
  m_title = new QCPTextElement(m_plot, QString(), m_theme.titleFont);
  m_title->setMargins(QMargins(4, 6, 4, 2));
  m_plot->plotLayout()->addElement(0, 0, m_title);
  m_colorBar = new QCPColorScale(m_plot);
  m_colorBar->setBarWidth(12);
  m_plot->plotLayout()->addElement(1, 1, m_colorBar);
  auto* group = new QCPMarginGroup(m_plot);
  m_plot->axisRect()->setMarginGroup(QCP::msTop | QCP::msBottom, group);
  m_colorBar->setMarginGroup(QCP::msTop | QCP::msBottom, group);

  m_layer = new ColorImageLayer(m_plot->axisRect());
  m_layer->setOverlay([this](QCPPainter* p) { drawOverlay(p); });
  connect(m_plot, &QCustomPlot::beforeReplot, this, [this] {
    const QRect r = m_plot->axisRect()->rect();
    const double labelPx = QFontMetrics(m_theme.smallFont).height() + 3;
    m_xTicker->setStep(TokenTicker::stepFor(m_data.heads, r.width(), 2 * labelPx));
    m_yTicker->setStep(TokenTicker::stepFor(m_data.layers, r.height(), labelPx));
  });
  connect(m_plot, &QCustomPlot::mouseMove, this, &ScoreGridView::onMouseMove);
  connect(m_plot, &QCustomPlot::mousePress, this, &ScoreGridView::onMousePress);
  connect(m_plot, &QCustomPlot::mouseRelease, this, &ScoreGridView::onMouseRelease);
  styleAll();
  rebuild();
}

ScoreGridView::~ScoreGridView() = default;

void ScoreGridView::setScores(int layers, int heads, std::vector<double> scores, const QString& title, bool signedScores) {
  ScoreGridData d;
  d.layers = layers;
  d.heads = heads;
  d.scores = std::move(scores);
  d.title = title;
  d.signedScores = signedScores;
  d.valueLabel = m_data.valueLabel;
  setData(std::move(d));
}

void ScoreGridView::setData(ScoreGridData data) {
  const auto cells = static_cast<std::size_t>(data.layers) * static_cast<std::size_t>(data.heads);
  if (!data.cellLabels.isEmpty() && static_cast<std::size_t>(data.cellLabels.size()) != cells)
    throw InputError(QString("score grid '%1': %2 cell labels for %3 cells").arg(data.title).arg(data.cellLabels.size()).arg(cells).toStdString());
  if ((!data.rowLabels.isEmpty() && data.rowLabels.size() != data.layers) || (!data.columnLabels.isEmpty() && data.columnLabels.size() != data.heads))
    throw InputError(QString("score grid '%1': tick labels do not match its %2 × %3 cells").arg(data.title).arg(data.layers).arg(data.heads).toStdString());
  if (data.layers < 0 || data.heads < 0 || data.scores.size() != cells)
    throw InputError(QString("score grid '%1': %2 scores, expected layers×heads = %3×%4")
                         .arg(data.title)
                         .arg(data.scores.size())
                         .arg(data.layers)
                         .arg(data.heads)
                         .toStdString());
  m_data = std::move(data);
  std::erase_if(m_selected, [this](const HeadRef& h) { return h.layer >= m_data.layers || h.head >= m_data.heads; });
  rebuild();
  m_plot->replot();
}

void ScoreGridView::setTheme(const PlotTheme& theme) {
  m_theme = theme;
  m_themeSet = true;
  styleAll();
  rebuild();
  m_plot->replot();
}

void ScoreGridView::setShowValues(bool on) {
  m_showValues = on;
  m_plot->replot();
}

void ScoreGridView::changeEvent(QEvent* event) {
  if (event->type() == QEvent::PaletteChange && !m_themeSet) {
    m_theme = PlotTheme::fromPalette(palette());
    styleAll();
    rebuild();
    m_plot->replot();
  }
  QWidget::changeEvent(event);
}

void ScoreGridView::styleAll() { applyPlotTheme(m_plot, m_theme); }

double ScoreGridView::score(int layer, int head) const {
  if (layer < 0 || head < 0 || layer >= m_data.layers || head >= m_data.heads) return NAN;
  return m_data.scores[static_cast<std::size_t>(layer) * static_cast<std::size_t>(m_data.heads) + static_cast<std::size_t>(head)];
}

void ScoreGridView::rebuild() {
  m_scale = ColorScale::forData(m_data.signedScores);
  const auto [lo, hi] = ColorScale::autoRange(m_data.scores.data(), m_data.scores.size(), m_scale.kind(), false);
  m_scale.setRange(lo, hi);
  m_scale.setMaskColor(m_theme.mask);
  setPlotTitle(m_plot, m_title, m_data.title);
  m_xTicker->setCount(m_data.heads);
  m_yTicker->setCount(m_data.layers);
  m_xTicker->setLabels(m_data.columnLabels);
  m_yTicker->setLabels(m_data.rowLabels);
  m_plot->xAxis->setLabel(m_data.columnAxis);
  m_plot->yAxis->setLabel(m_data.rowAxis);
  m_plot->xAxis->setRange(-0.5, std::max(1, m_data.heads) - 0.5);
  m_plot->yAxis->setRange(-0.5, std::max(1, m_data.layers) - 0.5);
  m_colorBar->setGradient(m_scale.gradient());
  m_colorBar->setDataRange(QCPRange(lo, hi));
  m_colorBar->axis()->setLabel(m_data.valueLabel);
  if (m_data.layers == 0 || m_data.heads == 0) {
    m_layer->setImage(QImage(), 0, 1, 0, 1);
    return;
  }
  QImage img(m_data.heads, m_data.layers, QImage::Format_RGB32);
  for (int l = 0; l < m_data.layers; ++l) {
    auto* line = reinterpret_cast<QRgb*>(img.scanLine(l));
    for (int h = 0; h < m_data.heads; ++h) line[h] = m_scale.mapRgb(score(l, h));
  }
  m_layer->setImage(std::move(img), -0.5, m_data.heads - 0.5, -0.5, m_data.layers - 0.5);
}

void ScoreGridView::drawOverlay(QCPPainter* p) {
  if (m_data.layers == 0 || m_data.heads == 0) return;
  QCPAxis* x = m_plot->xAxis;
  QCPAxis* y = m_plot->yAxis;
  auto cellRect = [&](int l, int h) {
    return QRectF(QPointF(x->coordToPixel(h - 0.5), y->coordToPixel(l - 0.5)), QPointF(x->coordToPixel(h + 0.5), y->coordToPixel(l + 0.5)))
        .normalized();
  };
  const QRectF one = cellRect(0, 0);
  QFont font = m_theme.smallFont;
  const QFontMetrics fm(font);
  const bool texts = !m_data.cellLabels.isEmpty();
  if (m_showValues && one.width() >= fm.horizontalAdvance(texts ? "abc" : "-0.00") + 4 && one.height() >= fm.height() + 2) {
    p->setFont(font);
    for (int l = 0; l < m_data.layers; ++l) {
      for (int h = 0; h < m_data.heads; ++h) {
        const double v = score(l, h);
        if (std::isnan(v)) continue;
        const QColor bg = m_scale.map(v);
        p->setPen(bg.lightnessF() < 0.55 ? QColor(255, 255, 255) : QColor(0x1a, 0x1a, 0x1a));
        const double a = std::abs(v);
        const QString text = texts ? fm.elidedText(m_data.cellLabels[l * m_data.heads + h], Qt::ElideRight, static_cast<int>(one.width()) - 4)
                             : a >= 1000 ? QString::number(v, 'g', 3)
                                         : QString::number(v, 'f', a >= 100 ? 0 : 2);
        p->drawText(cellRect(l, h), Qt::AlignCenter, text);
      }
    }
  }
  p->setAntialiasing(true);
  p->setBrush(Qt::NoBrush);
  for (const auto& [l, h] : m_selected) {
    p->setPen(QPen(m_theme.accent, 2.5));
    p->drawRect(cellRect(l, h).adjusted(1.25, 1.25, -1.25, -1.25));
  }
  if (m_hover.layer >= 0) {
    p->setPen(QPen(m_theme.foreground, 1));
    p->drawRect(cellRect(m_hover.layer, m_hover.head).adjusted(0.5, 0.5, -0.5, -0.5));
  }
}

std::vector<HeadRef> ScoreGridView::selectedHeads() const { return m_selected; }

void ScoreGridView::setSelectedHeads(const std::vector<HeadRef>& heads) {
  m_selected.clear();
  for (const auto& h : heads)
    if (h.layer >= 0 && h.head >= 0 && h.layer < m_data.layers && h.head < m_data.heads) m_selected.push_back(h);
  std::sort(m_selected.begin(), m_selected.end());
  m_selected.erase(std::unique(m_selected.begin(), m_selected.end()), m_selected.end());
  emit selectionChanged();
  m_plot->replot();
}

void ScoreGridView::clearSelection() { setSelectedHeads({}); }

HeadRef ScoreGridView::headAt(const QPointF& pixel) const {
  if (!m_plot->axisRect()->rect().contains(pixel.toPoint())) return {-1, -1};
  const int head = static_cast<int>(std::floor(m_plot->xAxis->pixelToCoord(pixel.x()) + 0.5));
  const int layer = static_cast<int>(std::floor(m_plot->yAxis->pixelToCoord(pixel.y()) + 0.5));
  if (layer < 0 || head < 0 || layer >= m_data.layers || head >= m_data.heads) return {-1, -1};
  return {layer, head};
}

QPointF ScoreGridView::headCenter(int layer, int head) const {
  return {m_plot->xAxis->coordToPixel(head), m_plot->yAxis->coordToPixel(layer)};
}

void ScoreGridView::onMouseMove(QMouseEvent* event) {
  const HeadRef h = headAt(event->position());
  if (h == m_hover) return;
  m_hover = h;
  m_plot->replot(QCustomPlot::rpQueuedReplot);
  if (h.layer < 0) {
    QToolTip::hideText();
    return;
  }
  const double v = score(h.layer, h.head);
  QToolTip::showText(m_plot->mapToGlobal(event->position().toPoint()) + QPoint(12, 12),
                     QString("layer %1, head %2 (L%1H%2): %3 = %4").arg(h.layer).arg(h.head).arg(m_data.valueLabel).arg(v, 0, 'g', 4),
                     m_plot);
  emit headHovered(h.layer, h.head, v);
}

void ScoreGridView::onMousePress(QMouseEvent* event) {
  m_pressed = event->button() == Qt::LeftButton;
  m_pressPos = event->position().toPoint();
}

void ScoreGridView::onMouseRelease(QMouseEvent* event) {
  if (!m_pressed || event->button() != Qt::LeftButton) return;
  m_pressed = false;
  if ((event->position().toPoint() - m_pressPos).manhattanLength() > 4) return;
  const HeadRef h = headAt(event->position());
  if (h.layer < 0) return;
  const Qt::KeyboardModifiers mods = event->modifiers();
  if (mods & (Qt::ShiftModifier | Qt::ControlModifier)) {
    auto it = std::lower_bound(m_selected.begin(), m_selected.end(), h);
    if (it != m_selected.end() && *it == h)
      m_selected.erase(it);
    else
      m_selected.insert(it, h);
  } else {
    m_selected = {h};
  }
  emit selectionChanged();
  emit headClicked(h.layer, h.head, mods);
  m_plot->replot();
}

QJsonObject ScoreGridView::plottedNumbers() const {
  QJsonObject o, m;
  QJsonArray values, rowLabels, colLabels, selected;
  for (double v : m_data.scores) values.append(std::isnan(v) ? QJsonValue() : QJsonValue(v));
  for (int l = 0; l < m_data.layers; ++l) rowLabels.append(m_data.rowLabels.isEmpty() ? QString("L%1").arg(l) : m_data.rowLabels[l]);
  for (int h = 0; h < m_data.heads; ++h) colLabels.append(m_data.columnLabels.isEmpty() ? QString("H%1").arg(h) : m_data.columnLabels[h]);
  m["rows"] = m_data.layers;
  m["cols"] = m_data.heads;
  m["values"] = values;
  m["row_labels"] = rowLabels;
  m["col_labels"] = colLabels;
  o["matrix"] = m;
  o["row_axis"] = m_data.rowAxis;
  o["col_axis"] = m_data.columnAxis;
  if (!m_data.cellLabels.isEmpty()) m["cell_labels"] = QJsonArray::fromStringList(m_data.cellLabels);
  o["value_label"] = m_data.valueLabel;
  o["signed"] = m_data.signedScores;
  o["color_range"] = QJsonArray{m_scale.low(), m_scale.high()};
  for (const auto& [l, h] : m_selected) selected.append(QJsonArray{l, h});
  o["selected_heads"] = selected;
  return o;
}

}  // namespace mechscope::views
