#include "app/gui/cli_result_view.hpp"

#include <QJsonArray>
#include <QJsonDocument>

#include <algorithm>
#include <cmath>

#include "analysis/common/registry.hpp"
#include "app/gui/eap_graph_result.hpp"
#include "app/gui/logit_lens_result.hpp"
#include "core/common/errors.hpp"

namespace mechscope::gui {

namespace {
using nlohmann::json;

double num(const json& v) { return v.is_number() ? v.get<double>() : NAN; }

std::vector<double> vec(const json& a) {
  std::vector<double> out;
  if (a.is_array())
    for (const auto& v : a) out.push_back(num(v));
  return out;
}

std::vector<int> ints(const json& a) {
  std::vector<int> out;
  if (a.is_array())
    for (const auto& v : a)
      if (v.is_number_integer()) out.push_back(v.get<int>());
  return out;
}

QString headName(const json& h) {
  if (h.is_string()) return QString::fromStdString(h.get<std::string>());
  if (h.is_object() && h.contains("layer")) return QString("%1.%2").arg(h["layer"].get<int>()).arg(h["head"].get<int>());
  if (h.is_array() && h.size() == 2) return QString("%1.%2").arg(h[0].get<int>()).arg(h[1].get<int>());
  return QString::fromStdString(h.dump());
}

QJsonArray headNames(const json& a) {
  QJsonArray out;
  if (a.is_array())
    for (const auto& h : a) out.append(headName(h));
  return out;
}

views::ScoreGridData grid(const json& g, const std::string& what, const QString& title, const QString& label, bool signedScores) {
  views::ScoreGridData d;
  d.scores = flattenGrid(g, d.layers, d.heads, what);
  d.title = title;
  d.valueLabel = label;
  d.signedScores = signedScores;
  return d;
}

QStringList labelsFor(const QStringList& tokens, std::size_t n) {
  QStringList out;
  for (std::size_t i = 0; i < n; ++i)
    out << (static_cast<qsizetype>(i) < tokens.size() ? tokens[static_cast<qsizetype>(i)] : QString::number(i));
  return out;
}

/// Top-level scalars (and short head lists) as form-side values: what the status line and the sidecar show.
void copyScalars(const json& j, QJsonObject& params) {
  for (const auto& [k, v] : j.items()) {
    const QString key = QString::fromStdString(k);
    if (v.is_boolean()) params[key] = v.get<bool>();
    else if (v.is_number()) params[key] = v.get<double>();
    else if (v.is_string()) params[key] = QString::fromStdString(v.get<std::string>());
  }
}

void constraint(const json& j, const QStringList& tokens, AnalysisResult& r) {
  int L = 0, P = 0;
  const auto alpha = flattenGrid(j.at("alpha"), L, P, "alpha");
  const auto marks = ints(j.value("constraint_positions", json::array()));
  views::LinePlotData a;
  a.title = "α(t): attention mass on the constraint per query token";
  a.yLabel = "mean attention to the constraint keys";
  a.xLabels = labelsFor(tokens, static_cast<std::size_t>(P));
  a.series.push_back({"ᾱ (mean over layers)", vec(j.at("alpha_mean")), {}, marks, QColor()});
  // First, middle and last layer, so depth trends show without L curves.
  for (int l : {0, L / 2, L - 1}) {
    if (l < 0 || (l == L / 2 && (l == 0 || l == L - 1))) continue;
    std::vector<double> row(alpha.begin() + static_cast<std::ptrdiff_t>(l) * P, alpha.begin() + static_cast<std::ptrdiff_t>(l + 1) * P);
    a.series.push_back({QString("α, layer %1").arg(l), row, {}, {}, QColor()});
  }
  r.lines.push_back(std::move(a));
  if (j.contains("beta") && j["beta"].is_array()) {
    views::LinePlotData b;
    b.title = "β(l): constraint mass over the answer steps per layer";
    b.xLabel = "layer";
    b.yLabel = "β";
    b.series.push_back({"β", vec(j["beta"]), {}, {}, QColor()});
    if (j.contains("delta_beta")) b.series.push_back({"Δβ (baseline − this)", vec(j["delta_beta"]), {}, {}, QColor()});
    r.lines.push_back(std::move(b));
  }
  QJsonArray c;
  for (int p : marks) c.append(p);
  r.params["constraint_positions"] = c;
  r.params["answer_steps"] = static_cast<int>(j.value("answer_rows", json::array()).size());
}

void retrieval(const json& j, AnalysisResult& r) {
  r.grids.push_back(grid(j.at("retrieval_score"), "retrieval_score", "Retrieval score (copy-paste rate from the needle)", "score", false));
  if (j.contains("activation_frequency"))
    r.grids.push_back(grid(j["activation_frequency"], "activation_frequency", "Activation frequency (fraction of tests with score > 0)",
                           "frequency", false));
  QJsonArray top;
  for (const auto& h : j.value("ranked_heads", json::array())) {
    if (top.size() >= 10) break;
    top.append(QString("%1 (%2)").arg(headName(h)).arg(num(h.value("score", json())), 0, 'f', 3));
  }
  r.params["top_heads"] = top;
  r.params["masked_heads"] = headNames(j.value("masked_heads", json::array()));
  if (j.contains("generated_text") && j["generated_text"].is_string())  // single test: the decoded continuation
    r.params["generated"] = QString::fromStdString(j["generated_text"].get<std::string>());
}

void ablate(const json& j, AnalysisResult& r) {
  if (j.contains("head_effect"))
    r.grids.push_back(grid(j["head_effect"], "head_effect",
                           QString("Ablation (%1) of each head alone: %2").arg(QString::fromStdString(j.value("method", std::string("zero"))),
                                                                               QString::fromStdString(j.value("head_effect_label", std::string("Δ logit diff")))),
                           QString::fromStdString(j.value("head_effect_label", std::string("Δ logit diff"))), true));
  if (j.contains("per_prompt") && j["per_prompt"].is_array() && !j["per_prompt"].empty()) {
    views::LinePlotData l;
    l.title = "Logit difference per prompt, before and after ablating the head set";
    l.xLabel = "prompt";
    l.yLabel = "logit diff";
    views::LineSeries before{"before", {}, {}, {}, QColor()}, after{"after", {}, {}, {}, QColor()};
    for (const auto& p : j["per_prompt"]) {
      before.y.push_back(num(p.value("before", json())));
      after.y.push_back(num(p.value("after", json())));
    }
    l.series = {before, after};
    r.lines.push_back(std::move(l));
  }
  r.params["heads"] = headNames(j.value("heads", json::array()));
}

void patch(const json& j, AnalysisResult& r) {
  const std::string layout = j.value("layout", std::string("[layer][head]"));
  const QString norm = QString::fromStdString(j.value("normalisation", std::string("none")));
  const QString comp = QString::fromStdString(j.value("component", j.value("method", std::string("z"))));
  auto add = [&](const char* key, const QString& what) {
    if (!j.contains(key)) return;
    if (layout == "[layer][head]") {
      r.grids.push_back(grid(j[key], key, QString("%1 (%2): %3").arg(what, comp, norm), norm, true));
    } else if (layout == "[layer][head][pos]") {
      // Sum over positions: the head's total effect (the per-position numbers stay in cli_json).
      const json& g = j[key];
      json summed = json::array();
      for (const auto& layer : g) {
        json row = json::array();
        for (const auto& head : layer) {
          double s = 0;
          for (const auto& v : head) s += num(v);
          row.push_back(s);
        }
        summed.push_back(row);
      }
      r.grids.push_back(grid(summed, key, QString("%1 (%2, summed over positions): %3").arg(what, comp, norm), norm, true));
    }
  };
  add("scores", "Activation patching");
  add("attribution_scores", "Attribution patching");
}

void dla(const json& j, AnalysisResult& r) {
  r.grids.push_back(grid(j.at("heads"), "heads", "Direct logit attribution per head (correct − incorrect)", "logit", true));
  if (j.contains("copy_score")) {
    const json& c = j["copy_score"];
    r.grids.push_back(grid(c.at("positive"), "copy_score.positive", "OV copy score (positive, % of role tokens in the top k)", "%", false));
    r.grids.push_back(grid(c.at("negative"), "copy_score.negative", "OV copy score (negative)", "%", false));
  }
}

void circuit(const json& j, AnalysisResult& r) {
  const int L = j.value("n_layers", 0), H = j.value("n_heads", 0);
  if (L > 0 && H > 0) {
    views::ScoreGridData heads;
    heads.layers = L;
    heads.heads = H;
    heads.scores.assign(static_cast<std::size_t>(L * H), 0.0);
    heads.title = QString("Circuit of %1: heads found (score = effect / stage max)").arg(QString::fromStdString(j.value("task", std::string("task"))));
    heads.valueLabel = "score";
    heads.signedScores = true;
    for (const auto& h : j.value("heads", json::array())) {
      const int l = h.value("layer", -1), hh = h.value("head", -1);
      if (l >= 0 && l < L && hh >= 0 && hh < H) heads.scores[static_cast<std::size_t>(l * H + hh)] = num(h.value("score", json()));
    }
    r.grids.push_back(std::move(heads));
  }
  for (const auto& s : j.value("stages", json::array())) {
    QStringList receivers;
    for (const auto& x : s.value("receivers", json::array())) receivers << QString::fromStdString(x.get<std::string>());
    const QString rec = receivers.size() > 4 ? receivers.mid(0, 4).join(", ") + QString(" … (%1)").arg(receivers.size()) : receivers.join(", ");
    r.grids.push_back(grid(s.at("scores"), "stage scores", QString("Stage %1 → %2: path effect / stage max").arg(s.value("stage", 0)).arg(rec),
                           "score", true));
  }
  QJsonArray roles;
  for (const auto& h : j.value("heads", json::array()))
    roles.append(QString("%1 %2 (stage %3)").arg(headName(h), QString::fromStdString(h.value("role", std::string()))).arg(h.value("stage", 0)));
  r.params["circuit_heads"] = roles;
}

void overlap(const json& j, AnalysisResult& r) {
  views::LinePlotData l;
  l.title = "Circuit overlap vs the per-stage selection size";
  l.xLabel = "top % of heads per stage";
  l.yLabel = "overlap";
  views::LineSeries jac{"Jaccard |A∩B|/|A∪B|", {}, {}, {}, QColor()}, over{"|A∩B| / min(|A|, |B|)", {}, {}, {}, QColor()};
  for (const auto& p : j.value("sweep", json::array())) {
    jac.x.push_back(num(p.value("top_percent", json())));
    over.x.push_back(jac.x.back());
    jac.y.push_back(num(p.value("jaccard", json())));
    over.y.push_back(num(p.value("intersection_over_min", json())));
  }
  if (!jac.y.empty()) {
    l.series = {jac, over};
    r.lines.push_back(std::move(l));
  }
  for (const char* k : {"shared", "only_a", "only_b"}) r.params[k] = headNames(j.value(k, json::array()));
}

void sinks(const json& j, AnalysisResult& r) {
  r.grids.push_back(grid(j.at("sink_score"), "sink_score", "Primary-sink score (mean attention to BOS)", "sink score", false));
  views::LinePlotData rate;
  rate.title = "Sink rate per layer";
  rate.xLabel = "layer";
  rate.yLabel = "fraction of sink heads";
  rate.series.push_back({"sink rate", vec(j.value("sink_rate", json::array())), {}, {}, QColor()});
  r.lines.push_back(std::move(rate));
}

void waadFai(const json& j, const QStringList& tokens, AnalysisResult& r) {
  r.grids.push_back(grid(j.at("head_distance"), "head_distance", "Mean head distance d(l, h)", "tokens", false));
  views::LinePlotData line;
  line.title = "WAAD and FAI per token";
  line.yLabel = "score";
  const auto first = [](const json& a) { return a.is_array() && !a.empty() && a[0].is_array() ? a[0] : json::array(); };
  const auto w = vec(first(j.value("waad", json::array()))), f = vec(first(j.value("fai", json::array())));
  line.xLabels = labelsFor(tokens, std::max(w.size(), f.size()));
  if (!w.empty()) line.series.push_back({"WAAD", w, {}, ints(first(j.value("waad_peaks", json::array()))), QColor()});
  if (!f.empty()) line.series.push_back({"FAI", f, {}, ints(first(j.value("fai_peaks", json::array()))), QColor()});
  r.lines.push_back(std::move(line));
  r.params["local_heads"] = headNames(j.value("local_heads", json::array()));
  r.params["global_heads"] = headNames(j.value("global_heads", json::array()));
}

}  // namespace

std::vector<double> flattenGrid(const nlohmann::json& g, int& rows, int& cols, const std::string& what) {
  if (!g.is_array() || g.empty() || !g[0].is_array())
    throw InputError("result '" + what + "' is not a [rows][columns] array of numbers");
  rows = static_cast<int>(g.size());
  cols = static_cast<int>(g[0].size());
  std::vector<double> out;
  out.reserve(static_cast<std::size_t>(rows) * static_cast<std::size_t>(cols));
  for (const auto& row : g) {
    if (!row.is_array() || static_cast<int>(row.size()) != cols)
      throw InputError("result '" + what + "' is ragged: rows of " + std::to_string(cols) + " and " + std::to_string(row.size()) + " values");
    for (const auto& v : row) out.push_back(num(v));
  }
  return out;
}

QString titleOf(const std::string& key) {
  QString t = QString::fromStdString(key).replace('_', ' ');
  if (!t.isEmpty()) t[0] = t[0].toUpper();
  return t;
}

void keepFormValues(AnalysisResult& r, const QJsonObject& form) {
  for (auto it = form.begin(); it != form.end(); ++it)
    if (!r.params.contains(it.key())) r.params[it.key()] = it.value();
}

namespace {

/// Any analysis from its table entry: each figure key a [layer][head] grid, each line key a per-token line.
void fromTable(const analysis::AnalysisDescriptor& d, const json& j, const QStringList& tokens, AnalysisResult& r) {
  for (const auto& key : d.figureKeys)
    if (j.contains(key)) r.grids.push_back(grid(j[key], key, titleOf(key), titleOf(key), false));
  for (const auto& key : d.lineKeys) {
    if (!j.contains(key) || !j[key].is_array() || j[key].empty()) continue;
    const json& row = j[key][0].is_array() ? j[key][0] : j[key];  // [pos] (the first prompt's)
    views::LinePlotData line;
    line.title = titleOf(key);
    line.yLabel = titleOf(key);
    line.xLabels = labelsFor(tokens, row.size());
    views::LineSeries s;
    s.name = QString::fromStdString(d.name);
    s.y = vec(row);
    line.series.push_back(std::move(s));
    r.lines.push_back(std::move(line));
  }
}
}  // namespace

AnalysisResult resultFromCliJson(const std::string& name, const nlohmann::json& j, const QStringList& tokenLabels) {
  if (!j.is_object()) throw InputError("result of '" + name + "' is not a JSON object");
  AnalysisResult r;
  r.analysis = QString::fromStdString(name);
  copyScalars(j, r.params);
  try {
    if (name == "constraint-attention") constraint(j, tokenLabels, r);
    else if (name == "retrieval") retrieval(j, r);
    else if (name == "ablate") ablate(j, r);
    else if (name == "patch") patch(j, r);
    else if (name == "circuit") circuit(j, r);
    else if (name == "overlap") overlap(j, r);
    else if (name == "dla") dla(j, r);
    else if (name == "sinks") sinks(j, r);
    else if (name == "waad-fai") waadFai(j, tokenLabels, r);
    else if (name == "logit-lens") {
      for (auto& g : logitLensGrids(j, tokenLabels)) r.grids.push_back(std::move(g));
    } else if (name == "eap") {
      r.graphs.push_back(eapGraph(j));
      if (j.contains("faithfulness")) r.lines.push_back(eapFaithfulnessLine(j));
    }
    else if (const auto* d = analysis::findAnalysis(name)) fromTable(*d, j, tokenLabels, r);
  } catch (const nlohmann::json::exception& e) {
    throw InputError("result of '" + name + "' lacks a documented key (" + e.what() + ")");
  }
  const std::string dump = j.dump();
  if (dump.size() < (4u << 20)) r.params["cli_json"] = QString::fromStdString(dump);
  return r;
}

}  // namespace mechscope::gui
