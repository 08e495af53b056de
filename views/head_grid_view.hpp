#pragma once
// Small multiples: every head of one layer as a thumbnail heatmap (max-pooled to at most
// thumbnailSize cells per side, so it stays cheap on long inputs); click a head to open it.
#include <QImage>
#include <QWidget>

#include <vector>

#include "views/plot_theme.hpp"

namespace mechscope::views {

/// Grid of per-head thumbnails of one layer's attention patterns.
class HeadGridView : public QWidget {
  Q_OBJECT
 public:
  /// An empty grid.
  explicit HeadGridView(QWidget* parent = nullptr);

  /// Shows `heads` patterns of `layer`, `patterns` = [heads, rows, cols] row-major; `causal` masks
  /// the upper triangle. Throws InputError when the size does not match.
  void setHeads(int layer, int heads, int rows, int cols, const std::vector<float>& patterns, bool causal = true);
  /// Thumbnail edge in pixels (default 96).
  void setThumbnailSize(int pixels);
  /// Highlights one head (-1 = none).
  void setSelectedHead(int head);
  /// Overrides the palette-derived theme.
  void setTheme(const PlotTheme& theme);

  /// The layer shown.
  int layer() const { return m_layer; }
  /// Number of heads.
  int headCount() const { return static_cast<int>(m_thumbs.size()); }
  /// The highlighted head (-1 = none).
  int selectedHead() const { return m_selected; }
  /// The thumbnail image of `head` (pooled cells, one pixel per cell).
  QImage thumbnail(int head) const;
  /// Where `head`'s thumbnail is drawn (widget coordinates).
  QRect thumbnailRect(int head) const;
  /// The head under `pos`, -1 if none.
  int headAt(const QPoint& pos) const;

  bool hasHeightForWidth() const override { return true; }
  int heightForWidth(int width) const override;
  QSize sizeHint() const override;

 signals:
  /// A head was clicked.
  void headClicked(int layer, int head);
  /// The mouse is over a head.
  void headHovered(int layer, int head);

 protected:
  void paintEvent(QPaintEvent* event) override;
  void mouseMoveEvent(QMouseEvent* event) override;
  void mousePressEvent(QMouseEvent* event) override;
  void leaveEvent(QEvent* event) override;
  void keyPressEvent(QKeyEvent* event) override;
  void changeEvent(QEvent* event) override;

 private:
  int columnsFor(int width) const;
  int tileWidth() const { return m_thumb + 2 * kPad; }
  int tileHeight() const;
  void recolor();

  static constexpr int kPad = 6;
  int m_layer = 0, m_thumb = 96, m_selected = -1, m_hover = -1;
  std::vector<std::vector<float>> m_pooled;  // per head: [tRows, tCols] pooled values, NaN = masked
  std::vector<double> m_maxima;
  int m_tRows = 0, m_tCols = 0;
  std::vector<QImage> m_thumbs;
  PlotTheme m_theme;
  bool m_themeSet = false;
};

}  // namespace mechscope::views
