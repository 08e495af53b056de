#include "views/heatmap_view.hpp"

#include <qcustomplot.h>

#include <QJsonArray>
#include <QKeyEvent>
#include <QToolTip>

#include <algorithm>
#include <cmath>

#include "views/color_image_layer.hpp"
#include "views/token_ticker.hpp"

namespace mechscope::views {
namespace {

constexpr double kMinVisibleCells = 4.0;
constexpr double kMaxSidecarCells = 1024.0 * 1024.0;

QString quoted(const QStringList& labels, int i) {
  if (i < 0 || i >= labels.size()) return QString();
  return QString(" '%1'").arg(tokenLabel(labels[i], 24));
}

}  // namespace

HeatmapView::HeatmapView(QWidget* parent) : QWidget(parent), m_theme(PlotTheme::fromPalette(palette())) {
  setFocusPolicy(Qt::StrongFocus);
  setMinimumSize(240, 200);
  auto* layout = new QVBoxLayout(this);
  layout->setContentsMargins(0, 0, 0, 0);
  m_plot = new QCustomPlot(this);
  m_plot->setFocusPolicy(Qt::NoFocus);
  m_plot->setMouseTracking(true);
  m_plot->setNoAntialiasingOnDrag(true);
  m_plot->setInteractions(QCP::iRangeDrag | QCP::iRangeZoom);
  layout->addWidget(m_plot);

  QCPAxisRect* rect = m_plot->axisRect();
  rect->setRangeDrag(Qt::Horizontal | Qt::Vertical);
  rect->setRangeZoom(Qt::Horizontal | Qt::Vertical);
  rect->setRangeZoomFactor(0.85);
  m_plot->yAxis->setRangeReversed(true);  // query 0 at the top
  m_xTicker = QSharedPointer<TokenTicker>::create();
  m_yTicker = QSharedPointer<TokenTicker>::create();
  m_plot->xAxis->setTicker(m_xTicker);
  m_plot->yAxis->setTicker(m_yTicker);
  m_plot->xAxis->grid()->setVisible(false);
  m_plot->yAxis->grid()->setVisible(false);
  m_plot->xAxis->setPadding(2);
  m_plot->yAxis->setPadding(2);

  m_plot->plotLayout()->insertRow(0);
  m_title = new QCPTextElement(m_plot, QString(), m_theme.titleFont);
  m_title->setMargins(QMargins(4, 6, 4, 2));
  m_plot->plotLayout()->addElement(0, 0, m_title);
  m_colorBar = new QCPColorScale(m_plot);
  m_colorBar->setBarWidth(12);
  m_colorBar->axis()->setPadding(4);
  m_plot->plotLayout()->addElement(1, 1, m_colorBar);
  auto* group = new QCPMarginGroup(m_plot);
  rect->setMarginGroup(QCP::msTop | QCP::msBottom, group);
  m_colorBar->setMarginGroup(QCP::msTop | QCP::msBottom, group);

  m_layer = new ColorImageLayer(rect);
  m_layer->setRefresh([this](QSize px) { refreshImage(px); });

  connect(m_plot->xAxis, qOverload<const QCPRange&>(&QCPAxis::rangeChanged), this, [this] { clampRanges(); });
  connect(m_plot->yAxis, qOverload<const QCPRange&>(&QCPAxis::rangeChanged), this, [this] { clampRanges(); });
  connect(m_plot, &QCustomPlot::beforeReplot, this, [this] { updateTicks(); });
  connect(m_plot, &QCustomPlot::mouseMove, this, &HeatmapView::onMouseMove);
  connect(m_plot, &QCustomPlot::mousePress, this, &HeatmapView::onMousePress);
  connect(m_plot, &QCustomPlot::mouseRelease, this, &HeatmapView::onMouseRelease);
  styleAll();
  rebuild();
}

HeatmapView::~HeatmapView() = default;

void HeatmapView::setData(HeatmapData data) {
  validateHeatmap(data);
  m_data = std::move(data);
  rebuild();
  resetView();
}

void HeatmapView::setOptions(const HeatmapOptions& options) {
  m_options = options;
  rebuild();
  m_plot->replot();
}

void HeatmapView::setPoolMode(PoolMode mode) {
  if (mode == m_pyramid.mode()) return;
  std::vector<float> base = m_pyramid.levelCount() > 0 ? m_pyramid.level(0).values : std::vector<float>{};
  m_pyramid.build(std::move(base), m_data.rows, m_data.cols, mode);
  ++m_generation;
  m_plot->replot();
}

void HeatmapView::setTheme(const PlotTheme& theme) {
  m_theme = theme;
  m_themeSet = true;
  styleAll();
  m_plot->replot();
}

void HeatmapView::changeEvent(QEvent* event) {
  if (event->type() == QEvent::PaletteChange && !m_themeSet) {
    m_theme = PlotTheme::fromPalette(palette());
    styleAll();
    m_plot->replot();
  }
  QWidget::changeEvent(event);
}

void HeatmapView::styleAll() {
  applyPlotTheme(m_plot, m_theme);
  m_scale.setMaskColor(m_theme.mask);
  ++m_generation;
  m_colorBar->setGradient(m_scale.gradient());
}

void HeatmapView::rebuild() {
  const PoolMode mode = m_pyramid.mode();
  m_display = computeHeatmapDisplay(m_data, m_options);
  m_pyramid.build(std::move(m_display.values), m_data.rows, m_data.cols, mode);
  m_display.values.clear();
  m_scale = ColorScale::forData(m_data.signedValues);
  m_scale.setLogScale(m_options.logScale);
  m_scale.setRange(m_display.low, m_display.high);
  m_scale.setMaskColor(m_theme.mask);
  ++m_generation;

  setPlotTitle(m_plot, m_title, m_data.title);
  m_xTicker->setLabels(m_data.colLabels);
  m_xTicker->setCount(m_data.cols);
  m_yTicker->setLabels(m_data.rowLabels);
  m_yTicker->setCount(m_data.rows);
  m_yTicker->setOffset(m_data.firstRow);
  m_plot->xAxis->setLabel(m_data.colAxis);
  m_plot->yAxis->setLabel(m_data.rowAxis);
  m_plot->xAxis->setTickLabelRotation(m_data.colLabels.isEmpty() ? 0 : 90);

  m_colorBar->setGradient(m_scale.gradient());
  const bool logAxis = m_options.logScale && !m_data.signedValues;
  m_colorBar->setDataScaleType(logAxis ? QCPAxis::stLogarithmic : QCPAxis::stLinear);
  if (logAxis)
    m_colorBar->axis()->setTicker(QSharedPointer<QCPAxisTickerLog>::create());
  else
    m_colorBar->axis()->setTicker(QSharedPointer<QCPAxisTicker>::create());
  m_colorBar->setDataRange(QCPRange(m_display.low, m_display.high));
  QString label = m_data.valueLabel;
  if (!m_display.note.isEmpty()) label += "\n" + m_display.note;
  m_colorBar->axis()->setLabel(label);
}

void HeatmapView::resetView() {
  m_clamping = true;
  m_plot->xAxis->setRange(-0.5, std::max(1, m_data.cols) - 0.5);
  m_plot->yAxis->setRange(-0.5, std::max(1, m_data.rows) - 0.5);
  m_clamping = false;
  m_plot->replot();
}

void HeatmapView::setVisibleWindow(double colLow, double colHigh, double rowLow, double rowHigh) {
  m_plot->xAxis->setRange(colLow, colHigh);
  m_plot->yAxis->setRange(rowLow, rowHigh);
  clampRanges();
  m_plot->replot();
}

void HeatmapView::panBy(double cols, double rows) {
  m_plot->xAxis->moveRange(cols);
  m_plot->yAxis->moveRange(rows);
  clampRanges();
  m_plot->replot();
}

void HeatmapView::zoomBy(double factor) {
  if (factor <= 0) return;
  m_plot->xAxis->scaleRange(1.0 / factor);
  m_plot->yAxis->scaleRange(1.0 / factor);
  clampRanges();
  m_plot->replot();
}

void HeatmapView::clampRanges() {
  if (m_clamping) return;
  m_clamping = true;
  auto clamp = [](QCPAxis* axis, int n) {
    const double lo = -0.5, hi = std::max(1, n) - 0.5;
    QCPRange r = axis->range();
    double size = std::clamp(r.size(), std::min(kMinVisibleCells, hi - lo), hi - lo);
    double centre = std::clamp(r.center(), lo + size / 2, hi - size / 2);
    QCPRange target(centre - size / 2, centre + size / 2);
    if (std::abs(target.lower - r.lower) > 1e-9 || std::abs(target.upper - r.upper) > 1e-9) axis->setRange(target);
  };
  clamp(m_plot->xAxis, m_data.cols);
  clamp(m_plot->yAxis, m_data.rows);
  m_clamping = false;
}

void HeatmapView::updateTicks() {
  const QFontMetrics fm(m_theme.smallFont);
  const double labelPx = fm.height() + 3;
  const QRect r = m_plot->axisRect()->rect();
  const double xLabelPx = m_data.colLabels.isEmpty() ? fm.horizontalAdvance(QString::number(m_data.cols)) + 10 : labelPx;
  m_xTicker->setStep(TokenTicker::stepFor(m_plot->xAxis->range().size(), r.width(), xLabelPx));
  m_yTicker->setStep(TokenTicker::stepFor(m_plot->yAxis->range().size(), r.height(), labelPx));
}

void HeatmapView::refreshImage(QSize px) {
  if (m_pyramid.levelCount() == 0 || px.width() <= 0 || px.height() <= 0) {
    m_layer->setImage(QImage(), 0, 1, 0, 1);
    m_layer->setBadge(QString(), {}, {}, {});
    return;
  }
  const QCPRange xr = m_plot->xAxis->range(), yr = m_plot->yAxis->range();
  const double visCols = std::min(xr.size(), static_cast<double>(m_data.cols));
  const double visRows = std::min(yr.size(), static_cast<double>(m_data.rows));
  const double cellsPerPixel = std::max(visCols / px.width(), visRows / px.height());
  const int level = m_pyramid.levelFor(cellsPerPixel);
  const PyramidLevel& L = m_pyramid.level(level);
  const int s = L.factor;
  // Visible blocks of the level; the image covers them plus a margin so small pan steps only redraw.
  const int vc0 = std::clamp(static_cast<int>(std::floor((xr.lower + 0.5) / s)), 0, L.cols - 1);
  const int vc1 = std::clamp(static_cast<int>(std::ceil((xr.upper + 0.5) / s)), vc0 + 1, L.cols);
  const int vr0 = std::clamp(static_cast<int>(std::floor((yr.lower + 0.5) / s)), 0, L.rows - 1);
  const int vr1 = std::clamp(static_cast<int>(std::ceil((yr.upper + 0.5) / s)), vr0 + 1, L.rows);
  m_shownLevel = level;
  m_shownCells = QSize(vc1 - vc0, vr1 - vr0);
  if (m_window.generation == m_generation && m_window.level == level && m_window.c0 <= vc0 && vc1 <= m_window.c1 &&
      m_window.r0 <= vr0 && vr1 <= m_window.r1)
    return;
  const int mc = (vc1 - vc0) / 4, mr = (vr1 - vr0) / 4;
  Window w;
  w.generation = m_generation;
  w.level = level;
  w.c0 = std::max(0, vc0 - mc);
  w.c1 = std::min(L.cols, vc1 + mc);
  w.r0 = std::max(0, vr0 - mr);
  w.r1 = std::min(L.rows, vr1 + mr);
  const int iw = w.c1 - w.c0, ih = w.r1 - w.r0;
  QImage img(iw, ih, QImage::Format_RGB32);
  for (int r = 0; r < ih; ++r) {
    const float* src = L.values.data() + static_cast<std::size_t>(w.r0 + r) * static_cast<std::size_t>(L.cols) + static_cast<std::size_t>(w.c0);
    m_scale.mapRow(src, reinterpret_cast<QRgb*>(img.scanLine(r)), iw);
  }
  m_layer->setImage(std::move(img), w.c0 * s - 0.5, w.c1 * s - 0.5, w.r0 * s - 0.5, w.r1 * s - 0.5);
  m_layer->setBadge(aggregationText(), m_theme.foreground, m_theme.background, m_theme.smallFont);
}

QString HeatmapView::aggregationText() const {
  if (m_shownLevel <= 0 || m_pyramid.levelCount() == 0) return QString();
  const int s = m_pyramid.level(m_shownLevel).factor;
  return QString("aggregated %1×%1 (%2)").arg(s).arg(m_pyramid.mode() == PoolMode::Max ? "max" : "mean");
}

HeatmapCell HeatmapView::cellAt(const QPointF& pixel) const {
  if (m_data.rows == 0 || !m_plot->axisRect()->rect().contains(pixel.toPoint())) return {};
  const double x = m_plot->xAxis->pixelToCoord(pixel.x());
  const double y = m_plot->yAxis->pixelToCoord(pixel.y());
  const int col = static_cast<int>(std::floor(x + 0.5));
  const int row = static_cast<int>(std::floor(y + 0.5));
  if (row < 0 || row >= m_data.rows || col < 0 || col >= m_data.cols) return {};
  return {row, col};
}

QPointF HeatmapView::cellCenter(int row, int col) const {
  return {m_plot->xAxis->coordToPixel(col), m_plot->yAxis->coordToPixel(row)};
}

double HeatmapView::displayValue(int row, int col) const {
  if (m_pyramid.levelCount() == 0 || row < 0 || col < 0 || row >= m_data.rows || col >= m_data.cols) return NAN;
  return m_pyramid.level(0).values[static_cast<std::size_t>(row) * static_cast<std::size_t>(m_data.cols) + static_cast<std::size_t>(col)];
}

double HeatmapView::rawValue(int row, int col) const {
  if (row < 0 || col < 0 || row >= m_data.rows || col >= m_data.cols) return NAN;
  return m_data.values[static_cast<std::size_t>(row) * static_cast<std::size_t>(m_data.cols) + static_cast<std::size_t>(col)];
}

QString HeatmapView::hoverText(const HeatmapCell& cell) const {
  const QString where = QString("(%1%2 #%3, %4%5 #%6)")
                            .arg(m_data.rowAxis, quoted(m_data.rowLabels, cell.row))
                            .arg(m_data.firstRow + cell.row)
                            .arg(m_data.colAxis, quoted(m_data.colLabels, cell.col))
                            .arg(cell.col);
  if (m_data.causal && cell.col > m_data.firstRow + cell.row) return where + " masked (key after query)";
  if (cell.col < m_options.excludeFirstK) return where + QString(" excluded (= %1)").arg(rawValue(cell.row, cell.col), 0, 'g', 4);
  QString text = where + QString(" = %1").arg(rawValue(cell.row, cell.col), 0, 'g', 4);
  if (m_options.rowNormalise) text += QString(" (shown %1)").arg(displayValue(cell.row, cell.col), 0, 'g', 3);
  return text;
}

void HeatmapView::onMouseMove(QMouseEvent* event) {
  const HeatmapCell cell = cellAt(event->position());
  if (cell.row == m_hover.row && cell.col == m_hover.col) return;
  m_hover = cell;
  if (!cell.valid()) {
    QToolTip::hideText();
    return;
  }
  if (!(event->buttons() & Qt::LeftButton))
    QToolTip::showText(m_plot->mapToGlobal(event->position().toPoint()) + QPoint(12, 12), hoverText(cell), m_plot);
  const bool masked = (m_data.causal && cell.col > m_data.firstRow + cell.row) || cell.col < m_options.excludeFirstK;
  if (!masked) emit cellHovered(cell.row, cell.col, rawValue(cell.row, cell.col));
}

void HeatmapView::onMousePress(QMouseEvent* event) {
  m_pressed = event->button() == Qt::LeftButton;
  m_pressPos = event->position().toPoint();
}

void HeatmapView::onMouseRelease(QMouseEvent* event) {
  if (!m_pressed || event->button() != Qt::LeftButton) return;
  m_pressed = false;
  if ((event->position().toPoint() - m_pressPos).manhattanLength() > 4) return;
  const HeatmapCell cell = cellAt(event->position());
  if (cell.valid()) emit cellClicked(cell.row, cell.col);
}

void HeatmapView::keyPressEvent(QKeyEvent* event) {
  const double dx = m_plot->xAxis->range().size() * 0.1, dy = m_plot->yAxis->range().size() * 0.1;
  switch (event->key()) {
    case Qt::Key_Left: panBy(-dx, 0); break;
    case Qt::Key_Right: panBy(dx, 0); break;
    case Qt::Key_Up: panBy(0, -dy); break;
    case Qt::Key_Down: panBy(0, dy); break;
    case Qt::Key_Plus:
    case Qt::Key_Equal: zoomBy(1.25); break;
    case Qt::Key_Minus: zoomBy(0.8); break;
    case Qt::Key_Home:
    case Qt::Key_0: resetView(); break;
    default: QWidget::keyPressEvent(event); return;
  }
  event->accept();
}

QJsonObject HeatmapView::plottedNumbers() const {
  QJsonObject o;
  if (m_data.rows == 0 || m_data.cols == 0) return o;
  const QCPRange xr = m_plot->xAxis->range(), yr = m_plot->yAxis->range();
  const int c0 = std::clamp(static_cast<int>(std::ceil(xr.lower - 0.5)), 0, m_data.cols - 1);
  const int c1 = std::clamp(static_cast<int>(std::floor(xr.upper + 0.5)), c0 + 1, m_data.cols);
  const int r0 = std::clamp(static_cast<int>(std::ceil(yr.lower - 0.5)), 0, m_data.rows - 1);
  const int r1 = std::clamp(static_cast<int>(std::floor(yr.upper + 0.5)), r0 + 1, m_data.rows);
  // Up to 1024² cells go out at full resolution; a larger window goes out as the pooled blocks of the
  // first level that fits (which is also what the screen shows: one block per pixel at most).
  int level = 0;
  auto cells = [&](int lv) {
    const double f = m_pyramid.level(lv).factor;
    return std::ceil((c1 - c0) / f) * std::ceil((r1 - r0) / f);
  };
  while (level + 1 < m_pyramid.levelCount() && cells(level) > kMaxSidecarCells) ++level;
  const PyramidLevel& L = m_pyramid.level(level);
  const int f = L.factor;
  const int lc0 = c0 / f, lc1 = (c1 + f - 1) / f, lr0 = r0 / f, lr1 = (r1 + f - 1) / f;
  QJsonObject m;
  m["rows"] = lr1 - lr0;
  m["cols"] = lc1 - lc0;
  m["row_offset"] = lr0 * f;
  m["col_offset"] = lc0 * f;
  m["block"] = f;
  QJsonArray values, rowLabels, colLabels;
  for (int r = lr0; r < lr1; ++r)
    for (int c = lc0; c < lc1; ++c) {
      const double v = L.values[static_cast<std::size_t>(r) * static_cast<std::size_t>(L.cols) + static_cast<std::size_t>(c)];
      values.append(std::isnan(v) ? QJsonValue() : QJsonValue(v));
    }
  auto label = [](const QStringList& labels, int i, int block) {
    const QString first = i < labels.size() ? labels[i] : QString::number(i);
    return block == 1 ? first : QString("%1..%2").arg(i).arg(i + block - 1);
  };
  for (int r = lr0; r < lr1; ++r) rowLabels.append(label(m_data.rowLabels, r * f, f));
  for (int c = lc0; c < lc1; ++c) colLabels.append(label(m_data.colLabels, c * f, f));
  m["values"] = values;
  m["row_labels"] = rowLabels;
  m["col_labels"] = colLabels;
  o["matrix"] = m;
  if (f > 1) o["aggregation"] = QString("%1x%1 blocks, %2").arg(f).arg(m_pyramid.mode() == PoolMode::Max ? "max" : "mean");
  o["row_axis"] = m_data.rowAxis;
  o["col_axis"] = m_data.colAxis;
  o["value_label"] = m_data.valueLabel;
  o["color_range"] = QJsonArray{m_display.low, m_display.high};
  o["log_scale"] = m_options.logScale;
  o["exclude_first_k"] = m_options.excludeFirstK;
  o["row_normalised"] = m_options.rowNormalise;
  o["causal_mask"] = m_data.causal;
  o["first_row_position"] = m_data.firstRow;
  o["null_means"] = "masked or excluded cell";
  return o;
}

}  // namespace mechscope::views
