#include "views/token_strip_view.hpp"

#include <QHelpEvent>
#include <QKeyEvent>
#include <QMouseEvent>
#include <QPainter>
#include <QToolTip>

#include <algorithm>

#include "core/common/errors.hpp"
#include "views/color_scale.hpp"

namespace mechscope::views {
namespace {
constexpr int kGap = 4, kPadX = 6, kPadY = 3, kMargin = 4;
}

TokenStripView::TokenStripView(QWidget* parent) : QWidget(parent), m_theme(PlotTheme::fromPalette(palette())) {
  setMouseTracking(true);
  setFocusPolicy(Qt::StrongFocus);
  QSizePolicy policy(QSizePolicy::Preferred, QSizePolicy::Preferred);
  policy.setHeightForWidth(true);
  setSizePolicy(policy);
}

void TokenStripView::setTokens(const QStringList& display, std::vector<qint64> ids, std::vector<std::pair<int, int>> offsets) {
  const auto n = static_cast<std::size_t>(display.size());
  if (!ids.empty() && ids.size() != n)
    throw InputError(QString("token strip: %1 ids for %2 tokens").arg(ids.size()).arg(n).toStdString());
  if (!offsets.empty() && offsets.size() != n)
    throw InputError(QString("token strip: %1 offsets for %2 tokens").arg(offsets.size()).arg(n).toStdString());
  m_display = display;
  m_ids = std::move(ids);
  m_offsets = std::move(offsets);
  m_weights.clear();
  m_selected = -1;
  m_hover = -1;
  relayout();
}

void TokenStripView::setTokenWeights(std::vector<double> weights) {
  m_weights = std::move(weights);
  update();
}

void TokenStripView::setSelectedToken(int index) {
  m_selected = (index >= 0 && index < tokenCount()) ? index : -1;
  update();
}

void TokenStripView::setTheme(const PlotTheme& theme) {
  m_theme = theme;
  m_themeSet = true;
  relayout();
}

void TokenStripView::changeEvent(QEvent* event) {
  if (event->type() == QEvent::PaletteChange && !m_themeSet) {
    m_theme = PlotTheme::fromPalette(palette());
    relayout();
  }
  QWidget::changeEvent(event);
}

std::vector<QRect> TokenStripView::layoutChips(int width) const {
  std::vector<QRect> chips;
  const QFontMetrics text(m_theme.font), small(m_theme.smallFont);
  const int h = text.height() + small.height() + 2 * kPadY;
  int x = kMargin, y = kMargin;
  for (int i = 0; i < tokenCount(); ++i) {
    const QString label = tokenLabel(m_display[i], 24);
    const QString id = i < static_cast<int>(m_ids.size()) ? QString::number(m_ids[static_cast<std::size_t>(i)]) : QString();
    const int w = std::max(text.horizontalAdvance(label), small.horizontalAdvance(id)) + 2 * kPadX;
    if (x + w > width - kMargin && x > kMargin) {
      x = kMargin;
      y += h + kGap;
    }
    chips.emplace_back(x, y, w, h);
    x += w + kGap;
  }
  return chips;
}

void TokenStripView::relayout() {
  m_chips = layoutChips(std::max(width(), 1));
  updateGeometry();
  update();
}

void TokenStripView::resizeEvent(QResizeEvent* event) {
  m_chips = layoutChips(std::max(width(), 1));
  QWidget::resizeEvent(event);
}

int TokenStripView::heightForWidth(int width) const {
  const auto chips = layoutChips(width);
  const int h = QFontMetrics(m_theme.font).height() + QFontMetrics(m_theme.smallFont).height() + 2 * kPadY;
  return chips.empty() ? h + 2 * kMargin : chips.back().bottom() + 1 + kMargin;
}

QSize TokenStripView::sizeHint() const { return {480, heightForWidth(480)}; }

QSize TokenStripView::minimumSizeHint() const {
  return {60, QFontMetrics(m_theme.font).height() + QFontMetrics(m_theme.smallFont).height() + 2 * kPadY + 2 * kMargin};
}

QRect TokenStripView::chipRect(int index) const {
  return (index >= 0 && index < static_cast<int>(m_chips.size())) ? m_chips[static_cast<std::size_t>(index)] : QRect();
}

int TokenStripView::tokenAt(const QPoint& pos) const {
  for (std::size_t i = 0; i < m_chips.size(); ++i)
    if (m_chips[i].contains(pos)) return static_cast<int>(i);
  return -1;
}

QString TokenStripView::tokenTooltip(int i) const {
  if (i < 0 || i >= tokenCount()) return QString();
  QString text = QString("#%1 '%2'").arg(i).arg(tokenLabel(m_display[i], 40));
  if (i < static_cast<int>(m_ids.size())) text += QString("\nid %1").arg(m_ids[static_cast<std::size_t>(i)]);
  if (i < static_cast<int>(m_offsets.size()))
    text += QString("\nchars [%1, %2)").arg(m_offsets[static_cast<std::size_t>(i)].first).arg(m_offsets[static_cast<std::size_t>(i)].second);
  if (i < static_cast<int>(m_weights.size())) text += QString("\nweight %1").arg(m_weights[static_cast<std::size_t>(i)], 0, 'g', 4);
  return text;
}

void TokenStripView::paintEvent(QPaintEvent*) {
  QPainter p(this);
  p.setRenderHint(QPainter::Antialiasing, true);
  const QFontMetrics text(m_theme.font);
  ColorScale scale(ColorScale::Kind::Sequential);
  const QColor chipBg = m_theme.isDark ? QColor(0x2b, 0x30, 0x37) : QColor(0xf1, 0xf3, 0xf5);
  for (int i = 0; i < static_cast<int>(m_chips.size()); ++i) {
    const QRectF r = QRectF(m_chips[static_cast<std::size_t>(i)]).adjusted(0.5, 0.5, -0.5, -0.5);
    QColor bg = chipBg;
    QColor fg = m_theme.foreground;
    if (i < static_cast<int>(m_weights.size())) {
      bg = scale.map(std::clamp(m_weights[static_cast<std::size_t>(i)], 0.0, 1.0));
      fg = bg.lightnessF() < 0.55 ? QColor(255, 255, 255) : QColor(0x1a, 0x1a, 0x1a);
    }
    p.setBrush(bg);
    p.setPen(i == m_selected ? QPen(m_theme.accent, 2) : QPen(i == m_hover ? m_theme.muted : m_theme.grid, 1));
    p.drawRoundedRect(r, 4, 4);
    p.setFont(m_theme.font);
    p.setPen(fg);
    p.drawText(QRectF(r.left(), r.top() + kPadY, r.width(), text.height()), Qt::AlignCenter, tokenLabel(m_display[i], 24));
    if (i < static_cast<int>(m_ids.size())) {
      p.setFont(m_theme.smallFont);
      p.setPen(i < static_cast<int>(m_weights.size()) ? fg : m_theme.muted);
      p.drawText(QRectF(r.left(), r.top() + kPadY + text.height(), r.width(), r.height() - text.height() - 2 * kPadY),
                 Qt::AlignCenter, QString::number(m_ids[static_cast<std::size_t>(i)]));
    }
  }
}

bool TokenStripView::event(QEvent* e) {
  if (e->type() == QEvent::ToolTip) {
    auto* help = static_cast<QHelpEvent*>(e);
    const int i = tokenAt(help->pos());
    if (i >= 0)
      QToolTip::showText(help->globalPos(), tokenTooltip(i), this);
    else
      QToolTip::hideText();
    return true;
  }
  return QWidget::event(e);
}

void TokenStripView::mouseMoveEvent(QMouseEvent* event) {
  const int i = tokenAt(event->position().toPoint());
  if (i == m_hover) return;
  m_hover = i;
  update();
  if (i >= 0) emit tokenHovered(i);
}

void TokenStripView::mousePressEvent(QMouseEvent* event) {
  if (event->button() != Qt::LeftButton) return QWidget::mousePressEvent(event);
  const int i = tokenAt(event->position().toPoint());
  if (i < 0) return;
  setSelectedToken(i);
  emit tokenSelected(i);
}

void TokenStripView::leaveEvent(QEvent* event) {
  m_hover = -1;
  update();
  QWidget::leaveEvent(event);
}

void TokenStripView::keyPressEvent(QKeyEvent* event) {
  if (tokenCount() == 0) return QWidget::keyPressEvent(event);
  int i = m_selected;
  if (event->key() == Qt::Key_Left)
    i = std::max(0, i - 1);
  else if (event->key() == Qt::Key_Right)
    i = std::min(tokenCount() - 1, i + 1);
  else
    return QWidget::keyPressEvent(event);
  setSelectedToken(i);
  emit tokenSelected(i);
}

}  // namespace mechscope::views
