#include "app/cli/figures.hpp"

#ifdef MECHSCOPE_WITH_VIEWS
#include <QJsonObject>
#include <QStringList>

#include "views/offscreen.hpp"
#include "views/score_grid_view.hpp"
#endif

namespace mechscope::cli {

#ifdef MECHSCOPE_WITH_VIEWS
namespace {
QStringList toQt(const std::vector<std::string>& v) {
  QStringList out;
  for (const auto& s : v) out << QString::fromStdString(s);
  return out;
}
QString get(const std::map<std::string, std::string>& m, const char* key) {
  const auto it = m.find(key);
  return it == m.end() ? QString() : QString::fromStdString(it->second);
}
}  // namespace

bool figuresAvailable() { return true; }

bool writeFigure(const FigureMatrix& m, const std::string& path, const std::map<std::string, std::string>& provenance,
                 std::string* error, double dpi) {
  views::ensureGuiApplication();
  views::FigureProvenance prov{get(provenance, "model"), get(provenance, "prompt"), get(provenance, "layer"),
                               get(provenance, "head"), get(provenance, "metric"), get(provenance, "normalisation"), {}};
  QString err;
  bool ok = false;
  if (m.scoreGrid) {
    views::ScoreGridData d;
    d.layers = m.rows;
    d.heads = m.cols;
    d.scores.assign(m.values.begin(), m.values.end());
    d.title = QString::fromStdString(m.title);
    d.signedScores = m.signedValues;
    ok = views::renderScoreGridFigure(d, QString::fromStdString(path), dpi, prov, QSize(), &err);
  } else {
    views::HeatmapData d;
    d.rows = m.rows;
    d.cols = m.cols;
    d.values = m.values;
    d.rowLabels = toQt(m.rowLabels);
    d.colLabels = toQt(m.colLabels);
    d.title = QString::fromStdString(m.title);
    d.rowAxis = QString::fromStdString(m.rowAxis);
    d.colAxis = QString::fromStdString(m.colAxis);
    d.valueLabel = QString::fromStdString(m.valueLabel);
    d.causal = m.causal;
    d.signedValues = m.signedValues;
    ok = views::renderHeatmapFigure(d, views::HeatmapOptions{}, QString::fromStdString(path), dpi, prov, QSize(), &err);
  }
  if (!ok && error) *error = err.toStdString();
  return ok;
}
#else
bool figuresAvailable() { return false; }

bool writeFigure(const FigureMatrix&, const std::string&, const std::map<std::string, std::string>&, std::string* error,
                 double) {
  if (error) *error = "figures are unavailable in this build (configured with -DMECHSCOPE_GUI=OFF); the data is written";
  return false;
}
#endif

}  // namespace mechscope::cli
