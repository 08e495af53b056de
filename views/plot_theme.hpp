#pragma once
// One look for every plot (on screen and exported): fonts, axis colours, margins, light/dark variants.
#include <QColor>
#include <QFont>
#include <QPalette>

class QCustomPlot;
class QCPTextElement;

namespace mechscope::views {

/// Colours and fonts shared by all plots.
struct PlotTheme {
  bool isDark = false;
  QColor background, foreground, muted, axis, grid, mask, accent;
  QFont font, titleFont, smallFont;

  /// The light theme (also the default for exported figures).
  static PlotTheme light();
  /// The dark theme.
  static PlotTheme dark();
  /// Light or dark, whichever matches `palette`'s window colour.
  static PlotTheme fromPalette(const QPalette& palette);
};

/// Styles every axis rect, axis, legend and text element of `plot` with `theme`.
void applyPlotTheme(QCustomPlot* plot, const PlotTheme& theme);

/// Sets a plot's title element (kept in row 0 of the plot layout); an empty text takes the row out
/// so untitled plots get no blank band.
void setPlotTitle(QCustomPlot* plot, QCPTextElement* title, const QString& text);

/// Elides `text` to at most `maxChars` characters and makes whitespace visible (↵, ⇥, leading ␣).
QString tokenLabel(const QString& text, int maxChars = 14);

}  // namespace mechscope::views
