#pragma once
// A QCustomPlot layerable that paints one colour image (heatmap cells, already coloured) over a rectangle
// in plot coordinates, refreshed lazily right before drawing so every path (screen, PNG, SVG, PDF) shows
// the level of detail that fits the target. Optional overlay painting (labels, selections) and a badge.
#include <qcustomplot.h>

#include <QImage>

#include <functional>

namespace mechscope::views {

/// Paints a pre-coloured image into an axis rect (nearest-neighbour, so cells stay crisp).
class ColorImageLayer : public QCPLayerable {
  Q_OBJECT
 public:
  /// Called before drawing with the axis rect's size in pixels; may call setImage().
  using Refresh = std::function<void(QSize axisRectPixels)>;
  /// Extra painting on top of the image (cell labels, selection outlines), clipped to the axis rect.
  using Overlay = std::function<void(QCPPainter* painter)>;

  /// A layer on `rect`'s plot, drawn in the "main" layer, clipped to `rect`.
  explicit ColorImageLayer(QCPAxisRect* rect);

  /// The image and the plot-coordinate rectangle it covers (key = x from left to right, value = y;
  /// image row 0 is drawn at `valueTop`, which may be numerically larger or smaller than `valueBottom`).
  void setImage(QImage image, double keyLeft, double keyRight, double valueTop, double valueBottom);
  /// Installs the lazy refresh hook.
  void setRefresh(Refresh refresh) { m_refresh = std::move(refresh); }
  /// Installs the overlay painter.
  void setOverlay(Overlay overlay) { m_overlay = std::move(overlay); }
  /// Text shown in a small box at the top-right corner of the axis rect (empty = none).
  void setBadge(const QString& text, const QColor& foreground, const QColor& background, const QFont& font);
  /// The image currently shown.
  const QImage& image() const { return m_image; }
  /// The axis rect this layer paints into.
  QCPAxisRect* axisRect() const { return m_rect; }
  /// The badge text.
  QString badge() const { return m_badge; }

 protected:
  void applyDefaultAntialiasingHint(QCPPainter* painter) const override;
  void draw(QCPPainter* painter) override;
  QRect clipRect() const override;

 private:
  QCPAxisRect* m_rect;
  QImage m_image;
  double m_keyLeft = 0, m_keyRight = 1, m_valueTop = 0, m_valueBottom = 1;
  Refresh m_refresh;
  Overlay m_overlay;
  QString m_badge;
  QColor m_badgeFg, m_badgeBg;
  QFont m_badgeFont;
};

}  // namespace mechscope::views
