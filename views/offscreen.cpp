#include "views/offscreen.hpp"

#include <qcustomplot.h>

#include <QApplication>

#include <algorithm>
#include <exception>

#include "views/heatmap_view.hpp"

namespace mechscope::views {
namespace {

bool fail(QString* error, const QString& message) {
  if (error) *error = message;
  return false;
}

bool haveWidgets(QString* error) {
  ensureGuiApplication();
  if (!qobject_cast<QApplication*>(QCoreApplication::instance()))
    return fail(error, "figures: a QCoreApplication without widgets is running; figures need a QApplication");
  return true;
}

// Lays the plot out at `size` (twice: tick steps depend on the axis rect of the previous layout).
void layOut(QCustomPlot* plot, QSize size) {
  plot->resize(size);
  plot->setViewport(QRect(QPoint(0, 0), size));
  plot->replot();
  plot->replot();
}

}  // namespace

void ensureGuiApplication() {
  if (QCoreApplication::instance()) return;
  qputenv("QT_QPA_PLATFORM", "offscreen");
  static int argc = 1;
  static char name[] = "mechscope";
  static char* argv[] = {name, nullptr};
  static QApplication* app = new QApplication(argc, argv);  // lives until exit, on purpose
  (void)app;
}

bool renderHeatmapFigure(const HeatmapData& data, const HeatmapOptions& options, const QString& path, double dpi,
                         const FigureProvenance& provenance, QSize size, QString* error) {
  if (!haveWidgets(error)) return false;
  try {
    HeatmapView view;
    view.setTheme(PlotTheme::light());
    view.setData(data);
    view.setOptions(options);
    if (!size.isValid() || size.isEmpty()) {
      const int n = std::max(data.rows, data.cols);
      const int side = std::clamp(n * 22, 420, 900);
      size = QSize(side + 170, side + 130);
    }
    layOut(view.plot(), size);
    return exportFigure(view.plot(), path, dpi, provenance, view.plottedNumbers(), error, size);
  } catch (const std::exception& e) {
    return fail(error, QString::fromStdString(e.what()));
  }
}

bool renderScoreGridFigure(const ScoreGridData& data, const QString& path, double dpi, const FigureProvenance& provenance,
                           QSize size, QString* error) {
  if (!haveWidgets(error)) return false;
  try {
    ScoreGridView view;
    view.setTheme(PlotTheme::light());
    view.setData(data);
    if (!size.isValid() || size.isEmpty())
      size = QSize(std::clamp(data.heads * 44 + 190, 420, 1800), std::clamp(data.layers * 26 + 130, 300, 1600));
    layOut(view.plot(), size);
    return exportFigure(view.plot(), path, dpi, provenance, view.plottedNumbers(), error, size);
  } catch (const std::exception& e) {
    return fail(error, QString::fromStdString(e.what()));
  }
}

bool renderLinePlotFigure(const LinePlotData& data, const QString& path, double dpi, const FigureProvenance& provenance,
                          QSize size, QString* error) {
  if (!haveWidgets(error)) return false;
  try {
    LinePlotView view;
    view.setTheme(PlotTheme::light());
    view.setData(data);
    if (!size.isValid() || size.isEmpty()) size = QSize(900, 420);
    layOut(view.plot(), size);
    view.resetView();
    return exportFigure(view.plot(), path, dpi, provenance, view.plottedNumbers(), error, size);
  } catch (const std::exception& e) {
    return fail(error, QString::fromStdString(e.what()));
  }
}

}  // namespace mechscope::views
