#include "views/plot_theme.hpp"

#include <qcustomplot.h>

#include <QFontDatabase>

namespace mechscope::views {
namespace {

QFont baseFont(int pointSize, bool bold = false) {
  QFont f;
  // Prefer a clean UI sans; fontconfig falls back to what the system has (DejaVu Sans on Debian).
  f.setFamilies({"Inter", "Source Sans 3", "Noto Sans", "DejaVu Sans", "Sans Serif"});
  f.setPointSizeF(pointSize);
  f.setBold(bold);
  f.setStyleHint(QFont::SansSerif);
  return f;
}

void styleAxis(QCPAxis* axis, const PlotTheme& t) {
  axis->setBasePen(QPen(t.axis, 1));
  axis->setTickPen(QPen(t.axis, 1));
  axis->setSubTickPen(QPen(t.axis, 1));
  axis->setTickLabelColor(t.foreground);
  axis->setLabelColor(t.foreground);
  axis->setTickLabelFont(t.smallFont);
  axis->setLabelFont(t.font);
  axis->setTickLengthIn(0);
  axis->setTickLengthOut(4);
  axis->setSubTickLengthIn(0);
  axis->setSubTickLengthOut(2);
  axis->grid()->setPen(QPen(t.grid, 1, Qt::DotLine));
  axis->grid()->setZeroLinePen(QPen(t.grid, 1));
  axis->setSelectedTickLabelColor(t.accent);
}

}  // namespace

PlotTheme PlotTheme::light() {
  PlotTheme t;
  t.isDark = false;
  t.background = QColor(0xff, 0xff, 0xff);
  t.foreground = QColor(0x24, 0x29, 0x2f);
  t.muted = QColor(0x6a, 0x73, 0x7d);
  t.axis = QColor(0x8c, 0x95, 0x9f);
  t.grid = QColor(0xe1, 0xe4, 0xe8);
  t.mask = QColor(0xe4, 0xe6, 0xea);
  t.accent = QColor(0xe8, 0x59, 0x0c);
  t.font = baseFont(9);
  t.titleFont = baseFont(11, true);
  t.smallFont = baseFont(8);
  return t;
}

PlotTheme PlotTheme::dark() {
  PlotTheme t = light();
  t.isDark = true;
  t.background = QColor(0x1e, 0x21, 0x26);
  t.foreground = QColor(0xe6, 0xe8, 0xeb);
  t.muted = QColor(0x9a, 0xa2, 0xac);
  t.axis = QColor(0x6b, 0x73, 0x7d);
  t.grid = QColor(0x33, 0x38, 0x40);
  t.mask = QColor(0x3a, 0x3d, 0x44);
  t.accent = QColor(0xff, 0x9f, 0x43);
  return t;
}

PlotTheme PlotTheme::fromPalette(const QPalette& palette) {
  return palette.color(QPalette::Window).lightness() < 128 ? dark() : light();
}

void applyPlotTheme(QCustomPlot* plot, const PlotTheme& t) {
  plot->setBackground(QBrush(t.background));
  for (QCPAxisRect* rect : plot->axisRects()) {
    rect->setBackground(QBrush(t.background));
    for (QCPAxis* axis : rect->axes()) styleAxis(axis, t);
  }
  // Text elements and colour scales are children of the plot even while out of the layout.
  for (QCPTextElement* text : plot->findChildren<QCPTextElement*>()) {
    text->setTextColor(t.foreground);
    text->setFont(t.titleFont);
  }
  for (QCPColorScale* scale : plot->findChildren<QCPColorScale*>()) styleAxis(scale->axis(), t);
  if (plot->legend) {
    plot->legend->setBrush(QBrush(t.background));
    plot->legend->setBorderPen(Qt::NoPen);
    plot->legend->setTextColor(t.foreground);
    plot->legend->setFont(t.font);
  }
}

void setPlotTitle(QCustomPlot* plot, QCPTextElement* title, const QString& text) {
  QCPLayoutGrid* grid = plot->plotLayout();
  const bool inLayout = grid->hasElement(0, 0) && grid->element(0, 0) == title;
  title->setText(text);
  if (text.isEmpty() && inLayout) {
    grid->take(title);
    grid->simplify();
  } else if (!text.isEmpty() && !inLayout) {
    grid->insertRow(0);
    grid->addElement(0, 0, title);
  }
  title->setVisible(!text.isEmpty());
}

QString tokenLabel(const QString& text, int maxChars) {
  QString s = text;
  s.replace('\n', QChar(0x21b5)).replace('\t', QChar(0x21e5)).replace('\r', "");
  if (s.startsWith(' ')) s[0] = QChar(0x2423);
  if (s.isEmpty()) s = QStringLiteral("∅");
  if (s.size() > maxChars) s = s.left(maxChars - 1) + QChar(0x2026);
  return s;
}

}  // namespace mechscope::views
