#pragma once
// Headless figures for mechscope-cli's batch mode: the same views and styling as the GUI, rendered
// on Qt's "offscreen" platform so no display is needed.
#include <QSize>
#include <QString>

#include "views/figure_export.hpp"
#include "views/heatmap_data.hpp"
#include "views/line_plot_view.hpp"
#include "views/score_grid_view.hpp"

namespace mechscope::views {

/// Creates a QApplication on the "offscreen" platform unless an application object exists.
/// Safe to call repeatedly; the application lives until the process exits.
void ensureGuiApplication();

/// Renders a heatmap figure (light theme) to `path` (.png/.svg/.pdf) plus its sidecar; `size` in logical
/// pixels (default fits the matrix). Returns false and fills `error` on failure (bad data included).
bool renderHeatmapFigure(const HeatmapData& data, const HeatmapOptions& options, const QString& path, double dpi,
                         const FigureProvenance& provenance, QSize size = QSize(), QString* error = nullptr);
/// Renders a layer × head score grid figure; see renderHeatmapFigure.
bool renderScoreGridFigure(const ScoreGridData& data, const QString& path, double dpi, const FigureProvenance& provenance,
                           QSize size = QSize(), QString* error = nullptr);
/// Renders a per-token line plot figure; see renderHeatmapFigure.
bool renderLinePlotFigure(const LinePlotData& data, const QString& path, double dpi, const FigureProvenance& provenance,
                          QSize size = QSize(), QString* error = nullptr);

}  // namespace mechscope::views
