#include "app/gui/analysis_result.hpp"

#include <ATen/ATen.h>

#include <QJsonArray>
#include <QJsonDocument>

#include <cmath>
#include <map>
#include <set>

#include "app/gui/cli_result_view.hpp"
#include "core/common/errors.hpp"
#include "store/cache_reader.hpp"
#include "store/cache_writer.hpp"

namespace mechscope::gui {

namespace {
QJsonArray numbers(const std::vector<double>& v) {
  QJsonArray a;
  for (double x : v) a.append(std::isfinite(x) ? QJsonValue(x) : QJsonValue());
  return a;
}
std::vector<double> toDoubles(const QJsonArray& a) {
  std::vector<double> v;
  for (const auto& x : a) v.push_back(x.isDouble() ? x.toDouble() : NAN);
  return v;
}
std::vector<int> toInts(const QJsonArray& a) {
  std::vector<int> v;
  for (const auto& x : a) v.push_back(x.toInt());
  return v;
}
}  // namespace

QJsonObject resultToJson(const AnalysisResult& r) {
  QJsonObject o{{"analysis", r.analysis}, {"model", r.model}, {"prompt", r.prompt}, {"params", r.params}};
  QJsonArray grids;
  for (const auto& g : r.grids)
    grids.append(QJsonObject{{"layers", g.layers}, {"heads", g.heads}, {"title", g.title}, {"value_label", g.valueLabel},
                             {"signed", g.signedScores}, {"scores", numbers(g.scores)}, {"row_axis", g.rowAxis},
                             {"column_axis", g.columnAxis}, {"row_labels", QJsonArray::fromStringList(g.rowLabels)},
                             {"column_labels", QJsonArray::fromStringList(g.columnLabels)},
                             {"cell_labels", QJsonArray::fromStringList(g.cellLabels)}});
  o["grids"] = grids;
  QJsonArray lines;
  for (const auto& l : r.lines) {
    QJsonArray series;
    for (const auto& s : l.series) {
      QJsonArray marked;
      for (int m : s.marked) marked.append(m);
      series.append(QJsonObject{{"name", s.name}, {"y", numbers(s.y)}, {"x", numbers(s.x)}, {"marked", marked}});
    }
    lines.append(QJsonObject{{"title", l.title}, {"x_label", l.xLabel}, {"y_label", l.yLabel},
                             {"x_labels", QJsonArray::fromStringList(l.xLabels)}, {"series", series}});
  }
  o["lines"] = lines;
  QJsonArray graphs;
  for (const auto& g : r.graphs) {
    QJsonArray nodes, edges;
    for (const auto& n : g.nodes)
      nodes.append(QJsonObject{{"name", n.name}, {"column", n.column}, {"row", n.row}, {"layer", n.head.layer}, {"head", n.head.head}});
    for (const auto& e : g.edges) edges.append(QJsonObject{{"from", e.from}, {"to", e.to}, {"receiver", e.receiver}, {"score", e.score}});
    graphs.append(QJsonObject{{"title", g.title}, {"score_label", g.scoreLabel}, {"nodes", nodes}, {"edges", edges}});
  }
  o["graphs"] = graphs;
  return o;
}

AnalysisResult resultFromJson(const QJsonObject& o, const QString& source) {
  if (!o.contains("analysis") || !o["grids"].isArray())
    throw InputError(source.toStdString() + ": not a mechscope GUI result (expected keys 'analysis' and 'grids')");
  AnalysisResult r;
  r.analysis = o["analysis"].toString();
  r.model = o["model"].toString();
  r.prompt = o["prompt"].toString();
  r.params = o["params"].toObject();
  for (const auto& gv : o["grids"].toArray()) {
    const QJsonObject g = gv.toObject();
    views::ScoreGridData d;
    d.layers = g["layers"].toInt();
    d.heads = g["heads"].toInt();
    d.title = g["title"].toString();
    d.valueLabel = g["value_label"].toString();
    d.signedScores = g["signed"].toBool();
    d.scores = toDoubles(g["scores"].toArray());
    d.rowAxis = g["row_axis"].toString("layer");  // files written before these keys existed: a layer × head grid
    d.columnAxis = g["column_axis"].toString("head");
    for (const auto& v : g["row_labels"].toArray()) d.rowLabels << v.toString();
    for (const auto& v : g["column_labels"].toArray()) d.columnLabels << v.toString();
    for (const auto& v : g["cell_labels"].toArray()) d.cellLabels << v.toString();
    if (d.layers < 0 || d.heads < 0 || d.scores.size() != static_cast<std::size_t>(d.layers) * static_cast<std::size_t>(d.heads))
      throw InputError(source.toStdString() + ": grid '" + d.title.toStdString() + "' has " + std::to_string(d.scores.size()) +
                       " scores, expected layers × heads = " + std::to_string(d.layers * d.heads));
    r.grids.push_back(std::move(d));
  }
  for (const auto& lv : o["lines"].toArray()) {
    const QJsonObject l = lv.toObject();
    views::LinePlotData d;
    d.title = l["title"].toString();
    d.xLabel = l["x_label"].toString();
    d.yLabel = l["y_label"].toString();
    for (const auto& s : l["x_labels"].toArray()) d.xLabels << s.toString();
    for (const auto& sv : l["series"].toArray()) {
      const QJsonObject s = sv.toObject();
      views::LineSeries ls;
      ls.name = s["name"].toString();
      ls.y = toDoubles(s["y"].toArray());
      ls.x = toDoubles(s["x"].toArray());
      ls.marked = toInts(s["marked"].toArray());
      d.series.push_back(std::move(ls));
    }
    r.lines.push_back(std::move(d));
  }
  for (const auto& gv : o["graphs"].toArray()) {  // absent in files written before graphs existed
    const QJsonObject g = gv.toObject();
    views::CircuitGraphData d;
    d.title = g["title"].toString();
    d.scoreLabel = g["score_label"].toString("score");
    for (const auto& nv : g["nodes"].toArray()) {
      const QJsonObject n = nv.toObject();
      d.nodes.push_back({n["name"].toString(), n["column"].toDouble(), n["row"].toDouble(), {n["layer"].toInt(-1), n["head"].toInt(-1)}});
    }
    for (const auto& ev : g["edges"].toArray()) {
      const QJsonObject e = ev.toObject();
      const int from = e["from"].toInt(-1), to = e["to"].toInt(-1);
      if (from < 0 || to < 0 || from >= static_cast<int>(d.nodes.size()) || to >= static_cast<int>(d.nodes.size()))
        throw InputError(source.toStdString() + ": graph '" + d.title.toStdString() + "' has an edge to a node it does not list");
      d.edges.push_back({from, to, e["receiver"].toString(), e["score"].toDouble(NAN)});
    }
    r.graphs.push_back(std::move(d));
  }
  return r;
}

void saveResults(const QString& path, const std::vector<AnalysisResult>& results, const QString& modelFolder) {
  store::Provenance prov;
  prov.modelFolder = modelFolder.toStdString();
  prov.commandLine = "mechscope (GUI) save results";
  store::CacheWriter w(path.toStdString(), prov);
  std::set<std::string> used;
  for (const auto& r : results) {
    std::string name = r.analysis.toStdString();
    for (int i = 2; used.count(name); ++i) name = r.analysis.toStdString() + "_" + std::to_string(i);
    used.insert(name);
    for (std::size_t g = 0; g < r.grids.size(); ++g) {
      const auto& grid = r.grids[g];
      at::Tensor t = at::tensor(at::ArrayRef<double>(grid.scores), at::kDouble).view({grid.layers, grid.heads});  // [layer, head]
      w.writeAnalysisArray(name, "grid_" + std::to_string(g), t);
    }
    w.writeAnalysisJson(name, "gui_result", QJsonDocument(resultToJson(r)).toJson(QJsonDocument::Compact).toStdString());
  }
  w.commit();
}

std::vector<AnalysisResult> loadResults(const QString& path) {
  const auto reader = store::CacheReader::open(path.toStdString());
  const QString model = QString::fromStdString(reader.provenance().modelFolder);
  QStringList labels;  // the CLI stores the input's token strings next to some results
  if (const auto strings = reader.tokenStrings(); !strings.empty())
    for (const auto& t : strings.front()) labels << QString::fromStdString(t);
  // Groups /analyses/<name>/: the GUI's own gui_result wins; else the CLI's result_json (same view).
  std::map<std::string, std::pair<std::string, std::string>> groups;  // group → (gui_result path, result_json path)
  for (const auto& d : reader.datasets()) {
    if (d.path.rfind("/analyses/", 0) != 0) continue;
    const auto slash = d.path.rfind('/');
    const std::string group = d.path.substr(10, slash - 10), leaf = d.path.substr(slash + 1);
    if (leaf == "gui_result") groups[group].first = d.path;
    else if (leaf == "result_json") groups[group].second = d.path;
  }
  std::vector<AnalysisResult> out;
  for (const auto& [group, paths] : groups) {
    const std::string& which = paths.first.empty() ? paths.second : paths.first;
    if (which.empty()) continue;
    const std::string text = reader.readText(which);
    if (!paths.first.empty()) {
      QJsonParseError err{};
      const auto doc = QJsonDocument::fromJson(QByteArray::fromStdString(text), &err);
      if (doc.isNull()) throw InputError(path.toStdString() + ": " + which + " is not valid JSON (" + err.errorString().toStdString() + ")");
      out.push_back(resultFromJson(doc.object(), path + ":" + QString::fromStdString(which)));
      continue;
    }
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(text);
    } catch (const nlohmann::json::exception& e) {
      throw InputError(path.toStdString() + ": " + which + " is not valid JSON (" + e.what() + ")");
    }
    // The group is the analysis name (a CLI file holds one analysis; "circuit_2"-style suffixes are ours).
    std::string name = j.is_object() && j.contains("analysis") && j["analysis"].is_string() ? j["analysis"].get<std::string>() : group;
    if (name == "constraint_attention") name = "constraint-attention";
    AnalysisResult r = resultFromCliJson(name, j, labels);
    r.model = model;
    out.push_back(std::move(r));
  }
  if (out.empty())
    throw InputError(path.toStdString() + ": holds no analysis results (/analyses/*/gui_result or result_json); run an analysis and save, "
                     "or write one with mechscope-cli <analysis> --out FILE.h5");
  return out;
}

}  // namespace mechscope::gui
