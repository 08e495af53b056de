#pragma once
// Export of any plot to PNG (chosen DPI), SVG or PDF with identical styling, plus a sidecar
// `<path>.json` with the provenance and exactly the plotted numbers (and `<path>.csv` for matrices
// and series), so every figure can be traced back and re-plotted.
#include <QJsonObject>
#include <QSize>
#include <QString>

class QCustomPlot;

namespace mechscope::views {

/// Where a figure's numbers came from.
struct FigureProvenance {
  QString model, prompt, layer, head, metric, normalisation;
  QJsonObject extra;  // anything else worth keeping (dataset, seed, tool version...)
};

/// File formats by suffix.
enum class FigureFormat { Png, Svg, Pdf, Unknown };

/// The format a path's suffix names (case-insensitive).
FigureFormat figureFormatFor(const QString& path);
/// Provenance as a JSON object (empty fields left out).
QJsonObject provenanceJson(const FigureProvenance& provenance);

/// Writes `plot` to `path` (.png/.svg/.pdf by suffix) at its current size (or `size` in logical pixels
/// when valid), PNG scaled by dpi/96, plus `<path>.json` (provenance, numbers, format, dpi, size) and
/// `<path>.csv` when `numbers` holds a "matrix" or "series". Returns false (and fills `error`) on failure.
bool exportFigure(QCustomPlot* plot, const QString& path, double dpi, const FigureProvenance& provenance,
                  const QJsonObject& numbers, QString* error = nullptr, QSize size = QSize());

/// Writes the sidecar(s) of a figure at `figurePath` only (used by exportFigure).
bool writeFigureSidecar(const QString& figurePath, double dpi, QSize size, const FigureProvenance& provenance,
                        const QJsonObject& numbers, QString* error = nullptr);

}  // namespace mechscope::views
