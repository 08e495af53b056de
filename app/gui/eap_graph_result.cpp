#include "app/gui/eap_graph_result.hpp"

#include <ATen/ATen.h>

#include <QRegularExpression>

#include <algorithm>
#include <cmath>
#include <map>
#include <string>

#include "analysis/common/datasets.hpp"
#include "analysis/eap/edge_attribution.hpp"
#include "analysis/eap/edge_patching.hpp"
#include "app/gui/plugin_adapter.hpp"
#include "core/common/errors.hpp"

namespace mechscope::gui {

namespace {

/// A node name split into its kind and numbers: ("a", l, h), ("kv", l, j), ("m", l), "input", "logits".
struct EapNodeName {
  std::string kind;
  int layer = -1, index = -1;
};

EapNodeName parseEapNode(const std::string& name) {
  static const QRegularExpression re(R"(^(?:(input)|(logits)|a(\d+)\.h(\d+)|a(\d+)\.kv(\d+)|m(\d+))$)");
  const auto m = re.match(QString::fromStdString(name));
  if (!m.hasMatch()) throw InputError("eap result: '" + name + "' is not a node name (input, a{l}.h{h}, a{l}.kv{j}, m{l}, logits)");
  if (!m.captured(1).isEmpty()) return {"input"};
  if (!m.captured(2).isEmpty()) return {"logits"};
  if (!m.captured(3).isEmpty()) return {"a", m.captured(3).toInt(), m.captured(4).toInt()};
  if (!m.captured(5).isEmpty()) return {"kv", m.captured(5).toInt(), m.captured(6).toInt()};
  return {"m", m.captured(7).toInt()};
}

}  // namespace

views::CircuitGraphData eapGraph(const nlohmann::json& j) {
  std::vector<std::string> names;
  auto add = [&](const std::string& n) {
    if (std::find(names.begin(), names.end(), n) == names.end()) names.push_back(n);
  };
  for (const auto& n : j.value("forward_nodes", nlohmann::json::array())) add(n.get<std::string>());
  for (const auto& r : j.value("receivers", nlohmann::json::array())) add(r.at("node").get<std::string>());
  std::vector<EapNodeName> parsed;
  int layers = 0, heads = 1;
  for (const auto& n : names) {
    parsed.push_back(parseEapNode(n));
    layers = std::max(layers, parsed.back().layer + 1);
    if (parsed.back().kind == "a") heads = std::max(heads, parsed.back().index + 1);
  }
  const double centre = (heads - 1) / 2.0;
  views::CircuitGraphData g;
  std::map<std::string, int> index;
  for (std::size_t i = 0; i < names.size(); ++i) {
    const EapNodeName& p = parsed[i];
    views::GraphNode node{QString::fromStdString(names[i]), 0, centre};
    if (p.kind == "a") node.column = 1 + 2 * p.layer, node.row = p.index, node.head = {p.layer, p.index};
    else if (p.kind == "kv") node.column = 1.4 + 2 * p.layer, node.row = p.index;  // a shared key/value input, beside the heads
    else if (p.kind == "m") node.column = 2 + 2 * p.layer, node.row = heads;  // below the heads: edges through the middle stay clear
    else if (p.kind == "logits") node.column = 1 + 2 * layers;
    index[names[i]] = static_cast<int>(i);
    g.nodes.push_back(std::move(node));
  }
  for (const auto& e : j.value("edges", nlohmann::json::array())) {
    const std::string from = e.at("upstream").get<std::string>(), to = e.at("downstream").get<std::string>();
    if (!index.count(from) || !index.count(to))
      throw InputError("eap result: the edge " + from + " → " + to + " joins a node missing from forward_nodes / receivers");
    const std::string receiver = e.value("receiver", std::string("-"));
    g.edges.push_back({index[from], index[to], receiver == "-" ? QString() : QString::fromStdString(receiver), e.at("score").get<double>()});
  }
  const std::string method = j.value("method", std::string("eap"));
  g.title = QString("Edge attribution (%1%2): the %3 listed edges of %4")
                .arg(QString::fromStdString(method))
                .arg(method == "eap-ig" ? QString(", %1 steps").arg(j.value("steps", 0)) : QString())
                .arg(g.edges.size())
                .arg(j.value("n_edges", static_cast<int64_t>(g.edges.size())));
  g.scoreLabel = "score";
  return g;
}

QString patchEapEdge(const AnalysisInput& in, const QJsonObject& form, const QString& upstream, const QString& downstream,
                     const QString& receiver, const RunContext& ctx) {
  const analysis::CausalDataset ds = formDataset(in, form, "eap");
  const auto groups = analysis::toPatchGroups(ds);
  const HookedTransformer& m = *in.session->model;
  const analysis::EdgeRef e = analysis::edgeByName(analysis::edgeGraphOf(m.config()), upstream.toStdString(), downstream.toStdString(),
                                                   receiver.isEmpty() ? "-" : receiver.toStdString());
  const int64_t rows = form["max_batch_rows"].toInt(32);
  const analysis::EdgePatchResult r = analysis::patchEdges(m, groups, {e}, std::max<int64_t>(1, rows), &ctx);
  const double after = r.metricClean + r.effect[0].item<double>();
  return QString("Patched %1 → %2%3 alone: LD %4 → %5 (Δ %6) over %7 prompts")
      .arg(upstream, downstream, receiver.isEmpty() ? QString() : " (" + receiver + ")")
      .arg(r.metricClean, 0, 'f', 4)
      .arg(after, 0, 'f', 4)
      .arg(r.effect[0].item<double>(), 0, 'f', 4)
      .arg(r.metricPatched.size(1));
}

views::LinePlotData eapFaithfulnessLine(const nlohmann::json& j) {
  const nlohmann::json& f = j.at("faithfulness");
  views::LinePlotData line;
  line.title = QString("Circuit faithfulness (CPR %1, CMD %2)").arg(f.value("cpr", 0.0), 0, 'f', 3).arg(f.value("cmd", 0.0), 0, 'f', 3);
  line.xLabel = "fraction of edges kept";
  line.yLabel = "faithfulness";
  views::LineSeries s;
  s.name = "top-|score| circuit";
  s.x = f.at("fraction").get<std::vector<double>>();
  for (const auto& v : f.at("faithfulness")) s.y.push_back(v.is_number() ? v.get<double>() : NAN);
  if (s.x.size() != s.y.size()) throw InputError("eap result: faithfulness and fraction differ in length");
  line.series.push_back(std::move(s));
  return line;
}

}  // namespace mechscope::gui
