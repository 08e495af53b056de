#pragma once
// The tokenization of a prompt as a wrapping strip of chips: the token's text (whitespace made
// visible) over its id; tooltip with index, id and character offsets; click selects a token.
#include <QStringList>
#include <QWidget>

#include <utility>
#include <vector>

#include "views/plot_theme.hpp"

namespace mechscope::views {

/// Token chips of one prompt.
class TokenStripView : public QWidget {
  Q_OBJECT
 public:
  /// An empty strip.
  explicit TokenStripView(QWidget* parent = nullptr);

  /// Shows tokens: display strings, ids and [begin, end) character offsets (ids/offsets may be empty;
  /// otherwise they must match `display` in length, else InputError).
  void setTokens(const QStringList& display, std::vector<qint64> ids, std::vector<std::pair<int, int>> offsets);
  /// Shades chips by a per-token weight in [0, 1] (e.g. attention from the selected query); empty = none.
  void setTokenWeights(std::vector<double> weights);
  /// Selects a token (-1 = none).
  void setSelectedToken(int index);
  /// Overrides the palette-derived theme.
  void setTheme(const PlotTheme& theme);

  /// Number of tokens.
  int tokenCount() const { return static_cast<int>(m_display.size()); }
  /// The selected token (-1 = none).
  int selectedToken() const { return m_selected; }
  /// The chip of token `index` (widget coordinates).
  QRect chipRect(int index) const;
  /// The token under `pos`, -1 if none.
  int tokenAt(const QPoint& pos) const;
  /// The tooltip text of token `index`.
  QString tokenTooltip(int index) const;

  bool hasHeightForWidth() const override { return true; }
  int heightForWidth(int width) const override;
  QSize sizeHint() const override;
  QSize minimumSizeHint() const override;

 signals:
  /// A token was clicked (or chosen with the arrow keys).
  void tokenSelected(int index);
  /// The mouse is over a token.
  void tokenHovered(int index);

 protected:
  void paintEvent(QPaintEvent* event) override;
  void mouseMoveEvent(QMouseEvent* event) override;
  void mousePressEvent(QMouseEvent* event) override;
  void leaveEvent(QEvent* event) override;
  void keyPressEvent(QKeyEvent* event) override;
  void resizeEvent(QResizeEvent* event) override;
  void changeEvent(QEvent* event) override;
  bool event(QEvent* event) override;

 private:
  std::vector<QRect> layoutChips(int width) const;
  void relayout();

  QStringList m_display;
  std::vector<qint64> m_ids;
  std::vector<std::pair<int, int>> m_offsets;
  std::vector<double> m_weights;
  std::vector<QRect> m_chips;
  int m_selected = -1, m_hover = -1;
  PlotTheme m_theme;
  bool m_themeSet = false;
};

}  // namespace mechscope::views
