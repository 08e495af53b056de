#include "views/head_grid_view.hpp"

#include <QKeyEvent>
#include <QMouseEvent>
#include <QPainter>
#include <QToolTip>

#include <algorithm>
#include <cmath>
#include <limits>

#include "core/common/errors.hpp"
#include "views/color_scale.hpp"
#include "views/heatmap_pyramid.hpp"

namespace mechscope::views {

HeadGridView::HeadGridView(QWidget* parent) : QWidget(parent), m_theme(PlotTheme::fromPalette(palette())) {
  setMouseTracking(true);
  setFocusPolicy(Qt::StrongFocus);
  QSizePolicy policy(QSizePolicy::Preferred, QSizePolicy::Preferred);
  policy.setHeightForWidth(true);
  setSizePolicy(policy);
}

void HeadGridView::setHeads(int layer, int heads, int rows, int cols, const std::vector<float>& patterns, bool causal) {
  if (heads < 0 || rows < 0 || cols < 0 ||
      patterns.size() != static_cast<std::size_t>(heads) * static_cast<std::size_t>(rows) * static_cast<std::size_t>(cols))
    throw InputError(QString("head grid (layer %1): %2 values, expected heads×rows×cols = %3×%4×%5")
                         .arg(layer).arg(patterns.size()).arg(heads).arg(rows).arg(cols).toStdString());
  m_layer = layer;
  m_pooled.clear();
  m_maxima.clear();
  const int largest = std::max(rows, cols);
  int factor = 1;
  while (largest > 0 && (largest + factor - 1) / factor > m_thumb) factor *= 2;
  const std::size_t per = static_cast<std::size_t>(rows) * static_cast<std::size_t>(cols);
  std::vector<float> one(per);
  for (int h = 0; h < heads; ++h) {
    std::copy_n(patterns.begin() + static_cast<std::ptrdiff_t>(h * per), per, one.begin());
    if (causal)
      for (int r = 0; r < rows; ++r)
        for (int c = r + 1; c < cols; ++c) one[static_cast<std::size_t>(r) * static_cast<std::size_t>(cols) + static_cast<std::size_t>(c)] = NAN;
    PyramidLevel level = poolDirect(one, rows, cols, factor, PoolMode::Max);
    m_tRows = level.rows;
    m_tCols = level.cols;
    float m = 0.0f;
    for (float v : level.values)
      if (!std::isnan(v)) m = std::max(m, v);
    m_maxima.push_back(m);
    m_pooled.push_back(std::move(level.values));
  }
  if (m_selected >= heads) m_selected = -1;
  recolor();
  updateGeometry();
  update();
}

void HeadGridView::recolor() {
  m_thumbs.clear();
  for (std::size_t h = 0; h < m_pooled.size(); ++h) {
    ColorScale scale(ColorScale::Kind::Sequential);
    scale.setRange(0.0, m_maxima[h] > 0 ? m_maxima[h] : 1.0);
    scale.setMaskColor(m_theme.mask);
    QImage img(std::max(1, m_tCols), std::max(1, m_tRows), QImage::Format_RGB32);
    img.fill(m_theme.mask);
    for (int r = 0; r < m_tRows; ++r) {
      auto* line = reinterpret_cast<QRgb*>(img.scanLine(r));
      for (int c = 0; c < m_tCols; ++c) line[c] = scale.mapRgb(m_pooled[h][static_cast<std::size_t>(r) * static_cast<std::size_t>(m_tCols) + static_cast<std::size_t>(c)]);
    }
    m_thumbs.push_back(std::move(img));
  }
}

void HeadGridView::setThumbnailSize(int pixels) {
  m_thumb = std::clamp(pixels, 16, 512);
  updateGeometry();
  update();
}

void HeadGridView::setSelectedHead(int head) {
  m_selected = (head >= 0 && head < headCount()) ? head : -1;
  update();
}

void HeadGridView::setTheme(const PlotTheme& theme) {
  m_theme = theme;
  m_themeSet = true;
  recolor();
  update();
}

void HeadGridView::changeEvent(QEvent* event) {
  if (event->type() == QEvent::PaletteChange && !m_themeSet) {
    m_theme = PlotTheme::fromPalette(palette());
    recolor();
    update();
  }
  QWidget::changeEvent(event);
}

QImage HeadGridView::thumbnail(int head) const {
  return (head >= 0 && head < headCount()) ? m_thumbs[static_cast<std::size_t>(head)] : QImage();
}

int HeadGridView::tileHeight() const { return m_thumb + 2 * kPad + QFontMetrics(m_theme.smallFont).height() + 2; }

int HeadGridView::columnsFor(int width) const { return std::max(1, width / tileWidth()); }

int HeadGridView::heightForWidth(int width) const {
  const int cols = columnsFor(width);
  const int rows = (headCount() + cols - 1) / cols;
  return std::max(1, rows) * tileHeight();
}

QSize HeadGridView::sizeHint() const {
  const int cols = std::max(1, std::min(headCount(), 4));
  return {cols * tileWidth(), heightForWidth(cols * tileWidth())};
}

QRect HeadGridView::thumbnailRect(int head) const {
  const int cols = columnsFor(width());
  const int labelH = QFontMetrics(m_theme.smallFont).height() + 2;
  const int x = (head % cols) * tileWidth() + kPad;
  const int y = (head / cols) * tileHeight() + kPad + labelH;
  // Keep the matrix aspect ratio inside the square tile.
  const double aspect = m_tRows > 0 && m_tCols > 0 ? static_cast<double>(m_tCols) / m_tRows : 1.0;
  const int w = aspect >= 1.0 ? m_thumb : static_cast<int>(m_thumb * aspect);
  const int h = aspect >= 1.0 ? static_cast<int>(m_thumb / aspect) : m_thumb;
  return {x, y, std::max(1, w), std::max(1, h)};
}

int HeadGridView::headAt(const QPoint& pos) const {
  for (int h = 0; h < headCount(); ++h)
    if (thumbnailRect(h).adjusted(-kPad, -kPad, kPad, kPad).contains(pos)) return h;
  return -1;
}

void HeadGridView::paintEvent(QPaintEvent*) {
  QPainter p(this);
  p.fillRect(rect(), m_theme.background);
  p.setFont(m_theme.smallFont);
  const int labelH = QFontMetrics(m_theme.smallFont).height() + 2;
  for (int h = 0; h < headCount(); ++h) {
    const QRect r = thumbnailRect(h);
    p.setRenderHint(QPainter::SmoothPixmapTransform, false);
    p.drawImage(r, m_thumbs[static_cast<std::size_t>(h)]);
    p.setPen(h == m_selected ? m_theme.accent : m_theme.foreground);
    p.drawText(QRect(r.left(), r.top() - labelH, r.width(), labelH), Qt::AlignLeft | Qt::AlignVCenter,
               QString("L%1H%2").arg(m_layer).arg(h));
    p.setPen(m_theme.muted);
    p.drawText(QRect(r.left(), r.top() - labelH, r.width(), labelH), Qt::AlignRight | Qt::AlignVCenter,
               QString("max %1").arg(m_maxima[static_cast<std::size_t>(h)], 0, 'f', 2));
    if (h == m_selected || h == m_hover) {
      p.setRenderHint(QPainter::Antialiasing, true);
      p.setPen(QPen(h == m_selected ? m_theme.accent : m_theme.muted, h == m_selected ? 2.5 : 1.5));
      p.setBrush(Qt::NoBrush);
      p.drawRect(QRectF(r).adjusted(-2, -2, 2, 2));
      p.setRenderHint(QPainter::Antialiasing, false);
    }
  }
}

void HeadGridView::mouseMoveEvent(QMouseEvent* event) {
  const int h = headAt(event->position().toPoint());
  if (h == m_hover) return;
  m_hover = h;
  update();
  if (h >= 0) {
    QToolTip::showText(event->globalPosition().toPoint() + QPoint(12, 12),
                       QString("layer %1, head %2 — click to open").arg(m_layer).arg(h), this);
    emit headHovered(m_layer, h);
  }
}

void HeadGridView::mousePressEvent(QMouseEvent* event) {
  if (event->button() != Qt::LeftButton) return QWidget::mousePressEvent(event);
  const int h = headAt(event->position().toPoint());
  if (h < 0) return;
  setSelectedHead(h);
  emit headClicked(m_layer, h);
}

void HeadGridView::leaveEvent(QEvent* event) {
  m_hover = -1;
  update();
  QWidget::leaveEvent(event);
}

void HeadGridView::keyPressEvent(QKeyEvent* event) {
  const int n = headCount();
  if (n == 0) return QWidget::keyPressEvent(event);
  const int cols = columnsFor(width());
  int h = m_selected < 0 ? 0 : m_selected;
  switch (event->key()) {
    case Qt::Key_Left: h = std::max(0, h - 1); break;
    case Qt::Key_Right: h = std::min(n - 1, h + 1); break;
    case Qt::Key_Up: h = std::max(0, h - cols); break;
    case Qt::Key_Down: h = std::min(n - 1, h + cols); break;
    case Qt::Key_Return:
    case Qt::Key_Enter:
      if (m_selected >= 0) emit headClicked(m_layer, m_selected);
      return;
    default: return QWidget::keyPressEvent(event);
  }
  setSelectedHead(h);
}

}  // namespace mechscope::views
