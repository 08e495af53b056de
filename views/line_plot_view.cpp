#include "views/line_plot_view.hpp"

#include <qcustomplot.h>

#include <QJsonArray>
#include <QToolTip>

#include <algorithm>
#include <cmath>

#include "core/common/errors.hpp"
#include "views/token_ticker.hpp"

namespace mechscope::views {

QColor seriesColor(int index, bool dark) {
  // Okabe–Ito colour-blind-safe set; the dark variant leads with the lighter blue.
  static const QColor kLight[] = {QColor(0x00, 0x72, 0xb2), QColor(0xd5, 0x5e, 0x00), QColor(0x00, 0x9e, 0x73),
                                  QColor(0xcc, 0x79, 0xa7), QColor(0xe6, 0x9f, 0x00), QColor(0x56, 0xb4, 0xe9),
                                  QColor(0x55, 0x55, 0x55)};
  static const QColor kDark[] = {QColor(0x56, 0xb4, 0xe9), QColor(0xe6, 0x9f, 0x00), QColor(0x00, 0xc0, 0x8b),
                                 QColor(0xe0, 0x8f, 0xbd), QColor(0xf0, 0xe4, 0x42), QColor(0xff, 0x7f, 0x50),
                                 QColor(0xbb, 0xbb, 0xbb)};
  const int n = static_cast<int>(std::size(kLight));
  const int i = ((index % n) + n) % n;
  return dark ? kDark[i] : kLight[i];
}

LinePlotView::LinePlotView(QWidget* parent) : QWidget(parent), m_theme(PlotTheme::fromPalette(palette())) {
  setMinimumSize(240, 160);
  auto* layout = new QVBoxLayout(this);
  layout->setContentsMargins(0, 0, 0, 0);
  m_plot = new QCustomPlot(this);
  m_plot->setMouseTracking(true);
  m_plot->setInteractions(QCP::iRangeDrag | QCP::iRangeZoom);
  m_plot->axisRect()->setRangeDrag(Qt::Horizontal);
  m_plot->axisRect()->setRangeZoom(Qt::Horizontal);
  layout->addWidget(m_plot);
  m_xTicker = QSharedPointer<TokenTicker>::create();
  m_plot->xAxis->setTicker(m_xTicker);
  m_plot->xAxis->grid()->setVisible(false);
  m_plot->yAxis->grid()->setVisible(true);
  m_plot->plotLayout()->insertRow(0);
  m_title = new QCPTextElement(m_plot, QString(), m_theme.titleFont);
  m_title->setMargins(QMargins(4, 6, 4, 2));
  m_plot->plotLayout()->addElement(0, 0, m_title);
  m_plot->legend->setVisible(true);
  m_plot->axisRect()->insetLayout()->setInsetAlignment(0, Qt::AlignTop | Qt::AlignRight);
  m_cursor = new QCPItemStraightLine(m_plot);
  m_cursor->setVisible(false);
  m_cursor->setLayer("overlay");
  connect(m_plot, &QCustomPlot::beforeReplot, this, [this] {
    const QFontMetrics fm(m_theme.smallFont);
    const double labelPx = m_data.xLabels.isEmpty() ? fm.horizontalAdvance("00000") + 8 : fm.height() + 3;
    m_xTicker->setStep(TokenTicker::stepFor(m_plot->xAxis->range().size(), m_plot->axisRect()->rect().width(), labelPx));
  });
  connect(m_plot, &QCustomPlot::mouseMove, this, &LinePlotView::onMouseMove);
  connect(m_plot, &QCustomPlot::mouseDoubleClick, this, [this] { resetView(); });
  connect(m_plot, &QCustomPlot::mouseRelease, this, [this](QMouseEvent* e) {
    if (e->button() == Qt::LeftButton && m_hover >= 0) emit pointClicked(m_hover);
  });
  connect(m_plot->xAxis, qOverload<const QCPRange&>(&QCPAxis::rangeChanged), this, [this](const QCPRange& r) {
    const double full = m_xMax - m_xMin + 1.0;
    if (r.size() > full) m_plot->xAxis->setRange(m_xMin - 0.5, m_xMax + 0.5);
  });
  applyPlotTheme(m_plot, m_theme);
}

LinePlotView::~LinePlotView() = default;

void LinePlotView::setData(LinePlotData data) {
  for (const LineSeries& s : data.series) {
    if (!s.x.empty() && s.x.size() != s.y.size())
      throw InputError(QString("line plot '%1': series '%2' has %3 x values and %4 y values")
                           .arg(data.title, s.name).arg(s.x.size()).arg(s.y.size()).toStdString());
    for (int m : s.marked)
      if (m < 0 || static_cast<std::size_t>(m) >= s.y.size())
        throw InputError(QString("line plot '%1': series '%2' marks point %3 of %4")
                             .arg(data.title, s.name).arg(m).arg(s.y.size()).toStdString());
  }
  m_data = std::move(data);
  rebuild();
  resetView();
}

void LinePlotView::setTheme(const PlotTheme& theme) {
  m_theme = theme;
  m_themeSet = true;
  rebuild();
  m_plot->replot();
}

void LinePlotView::changeEvent(QEvent* event) {
  if (event->type() == QEvent::PaletteChange && !m_themeSet) {
    m_theme = PlotTheme::fromPalette(palette());
    rebuild();
    m_plot->replot();
  }
  QWidget::changeEvent(event);
}

void LinePlotView::rebuild() {
  m_plot->clearGraphs();
  m_xMin = 0;
  m_xMax = 1;
  bool first = true;
  double yMin = 0, yMax = 1;
  bool anyY = false;
  int index = 0;
  for (const LineSeries& s : m_data.series) {
    QVector<double> xs(static_cast<int>(s.y.size())), ys(static_cast<int>(s.y.size()));
    for (std::size_t i = 0; i < s.y.size(); ++i) {
      xs[static_cast<int>(i)] = s.x.empty() ? static_cast<double>(i) : s.x[i];
      ys[static_cast<int>(i)] = s.y[i];
      if (std::isfinite(s.y[i])) {
        yMin = anyY ? std::min(yMin, s.y[i]) : s.y[i];
        yMax = anyY ? std::max(yMax, s.y[i]) : s.y[i];
        anyY = true;
      }
    }
    if (!xs.isEmpty()) {
      const auto [lo, hi] = std::minmax_element(xs.begin(), xs.end());
      m_xMin = first ? *lo : std::min(m_xMin, *lo);
      m_xMax = first ? *hi : std::max(m_xMax, *hi);
      first = false;
    }
    const QColor color = s.color.isValid() ? s.color : seriesColor(index, m_theme.isDark);
    QCPGraph* g = m_plot->addGraph();
    g->setName(s.name);
    g->setData(xs, ys, true);
    g->setPen(QPen(color, 1.8));
    g->setAntialiased(true);
    g->setLineStyle(QCPGraph::lsLine);
    if (s.y.size() <= 64) g->setScatterStyle(QCPScatterStyle(QCPScatterStyle::ssDisc, color, 3.5));
    if (!s.marked.empty()) {
      QVector<double> mx, my;
      for (int m : s.marked) {
        mx.push_back(xs[m]);
        my.push_back(ys[m]);
      }
      QCPGraph* marks = m_plot->addGraph();
      marks->setName(s.name + " (marked)");
      marks->setData(mx, my);
      marks->setLineStyle(QCPGraph::lsNone);
      marks->setScatterStyle(QCPScatterStyle(QCPScatterStyle::ssCircle, QPen(m_theme.foreground, 1.5), QBrush(color), 8));
      marks->removeFromLegend();
    }
    ++index;
  }
  if (!anyY) {
    yMin = 0;
    yMax = 1;
  }
  const double pad = (yMax - yMin) * 0.06 + (yMax == yMin ? 0.5 : 0.0);
  m_plot->yAxis->setRange(yMin - pad, yMax + pad);
  setPlotTitle(m_plot, m_title, m_data.title);
  m_plot->xAxis->setLabel(m_data.xLabel);
  m_plot->yAxis->setLabel(m_data.yLabel);
  m_xTicker->setLabels(m_data.xLabels);
  m_xTicker->setCount(static_cast<int>(std::ceil(m_xMax)) + 1);
  m_plot->xAxis->setTickLabelRotation(m_data.xLabels.isEmpty() ? 0 : 90);
  m_plot->legend->setVisible(m_data.series.size() > 1);
  m_cursor->setPen(QPen(m_theme.muted, 1, Qt::DashLine));
  applyPlotTheme(m_plot, m_theme);
  QColor legendBg = m_theme.background;
  legendBg.setAlpha(220);
  m_plot->legend->setBrush(legendBg);
}

void LinePlotView::resetView() {
  m_plot->xAxis->setRange(m_xMin - 0.5, m_xMax + 0.5);
  m_plot->replot();
}

int LinePlotView::indexAt(const QPointF& pixel) const {
  if (!m_plot->axisRect()->rect().contains(pixel.toPoint())) return -1;
  const int i = static_cast<int>(std::lround(m_plot->xAxis->pixelToCoord(pixel.x())));
  return (i < m_xMin || i > m_xMax) ? -1 : i;
}

void LinePlotView::onMouseMove(QMouseEvent* event) {
  const int i = indexAt(event->position());
  if (i == m_hover) return;
  m_hover = i;
  m_cursor->setVisible(i >= 0);
  if (i < 0) {
    QToolTip::hideText();
    m_plot->replot(QCustomPlot::rpQueuedReplot);
    return;
  }
  m_cursor->point1->setCoords(i, 0);
  m_cursor->point2->setCoords(i, 1);
  QString text = QString("#%1").arg(i);
  if (i < m_data.xLabels.size()) text += QString(" '%1'").arg(tokenLabel(m_data.xLabels[i], 24));
  for (const LineSeries& s : m_data.series) {
    for (std::size_t k = 0; k < s.y.size(); ++k) {
      const double x = s.x.empty() ? static_cast<double>(k) : s.x[k];
      if (std::lround(x) == i) {
        text += QString("\n%1 = %2").arg(s.name).arg(s.y[k], 0, 'g', 4);
        break;
      }
    }
  }
  QToolTip::showText(m_plot->mapToGlobal(event->position().toPoint()) + QPoint(12, 12), text, m_plot);
  m_plot->replot(QCustomPlot::rpQueuedReplot);
  emit pointHovered(i);
}

QJsonObject LinePlotView::plottedNumbers() const {
  QJsonObject o;
  QJsonArray series, labels;
  for (const LineSeries& s : m_data.series) {
    QJsonObject js;
    QJsonArray xs, ys, marked;
    for (std::size_t i = 0; i < s.y.size(); ++i) {
      xs.append(s.x.empty() ? static_cast<double>(i) : s.x[i]);
      ys.append(std::isfinite(s.y[i]) ? QJsonValue(s.y[i]) : QJsonValue());
    }
    for (int m : s.marked) marked.append(m);
    js["name"] = s.name;
    js["x"] = xs;
    js["y"] = ys;
    js["marked"] = marked;
    series.append(js);
  }
  for (const QString& l : m_data.xLabels) labels.append(l);
  o["series"] = series;
  o["x_labels"] = labels;
  o["x_label"] = m_data.xLabel;
  o["y_label"] = m_data.yLabel;
  return o;
}

}  // namespace mechscope::views
