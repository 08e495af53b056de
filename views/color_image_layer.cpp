#include "views/color_image_layer.hpp"

#include <algorithm>
#include <cmath>

namespace mechscope::views {

ColorImageLayer::ColorImageLayer(QCPAxisRect* rect) : QCPLayerable(rect->parentPlot(), "main"), m_rect(rect) {}

void ColorImageLayer::setImage(QImage image, double keyLeft, double keyRight, double valueTop, double valueBottom) {
  m_image = std::move(image);
  m_keyLeft = keyLeft;
  m_keyRight = keyRight;
  m_valueTop = valueTop;
  m_valueBottom = valueBottom;
}

void ColorImageLayer::setBadge(const QString& text, const QColor& fg, const QColor& bg, const QFont& font) {
  m_badge = text;
  m_badgeFg = fg;
  m_badgeBg = bg;
  m_badgeFont = font;
}

void ColorImageLayer::applyDefaultAntialiasingHint(QCPPainter* painter) const { painter->setAntialiasing(false); }

QRect ColorImageLayer::clipRect() const { return m_rect->rect(); }

void ColorImageLayer::draw(QCPPainter* painter) {
  if (m_refresh) m_refresh(m_rect->rect().size());
  QCPAxis* x = m_rect->axis(QCPAxis::atBottom);
  QCPAxis* y = m_rect->axis(QCPAxis::atLeft);
  if (!m_image.isNull() && x && y) {
    const QRectF target = QRectF(QPointF(x->coordToPixel(m_keyLeft), y->coordToPixel(m_valueTop)),
                                 QPointF(x->coordToPixel(m_keyRight), y->coordToPixel(m_valueBottom)));
    const bool flipX = target.width() < 0, flipY = target.height() < 0;
    QImage img = (flipX || flipY) ? m_image.mirrored(flipX, flipY) : m_image;
    const QRectF rect = target.normalized();
    painter->save();
    painter->setRenderHint(QPainter::SmoothPixmapTransform, false);
    if (painter->modes().testFlag(QCPPainter::pmVectorized)) {
      // PDF/SVG viewers smooth small embedded images when enlarging them: pre-scale with nearest
      // neighbour so every cell stays a crisp block in vector output too.
      const double scale = std::min(4096.0 / std::max(1, img.width()), 4096.0 / std::max(1, img.height()));
      const int w = std::clamp(static_cast<int>(std::ceil(rect.width() * 2)), 1, static_cast<int>(img.width() * std::max(1.0, scale)));
      const int h = std::clamp(static_cast<int>(std::ceil(rect.height() * 2)), 1, static_cast<int>(img.height() * std::max(1.0, scale)));
      if (w > img.width() || h > img.height()) img = img.scaled(std::max(w, img.width()), std::max(h, img.height()), Qt::IgnoreAspectRatio, Qt::FastTransformation);
    }
    painter->drawImage(rect, img);
    painter->restore();
  }
  if (m_overlay) {
    painter->save();
    m_overlay(painter);
    painter->restore();
  }
  if (!m_badge.isEmpty()) {
    painter->save();
    painter->setFont(m_badgeFont);
    const QFontMetrics fm(m_badgeFont);
    const QRect area = m_rect->rect();
    QRectF box(0, 0, fm.horizontalAdvance(m_badge) + 12, fm.height() + 6);
    box.moveTopRight(QPointF(area.right() - 6, area.top() + 6));
    painter->setAntialiasing(true);
    QColor bg = m_badgeBg;
    bg.setAlpha(215);
    painter->setPen(Qt::NoPen);
    painter->setBrush(bg);
    painter->drawRoundedRect(box, 4, 4);
    painter->setPen(m_badgeFg);
    painter->drawText(box, Qt::AlignCenter, m_badge);
    painter->restore();
  }
}

}  // namespace mechscope::views
