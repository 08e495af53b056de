#pragma once
// The `eap` result (analysis/eap, its --json document) as a circuit graph for the GUI: every node of the
// model's edge graph placed by layer — the embeddings left, then each layer's heads (one row per head,
// shared key/value heads beside them) and its MLP, the logits right — with the listed top edges.
#include <nlohmann/json.hpp>

#include "views/circuit_graph_view.hpp"
#include "app/gui/analysis_adapters.hpp"
#include "views/line_plot_view.hpp"

namespace mechscope::gui {

/// The graph of an `eap` JSON document ("forward_nodes", "receivers", "edges"); InputError when a listed
/// edge names a node the document does not list, or a node name is not one of EAP's ("input", "a{l}.h{h}",
/// "a{l}.kv{j}", "m{l}", "logits").
views::CircuitGraphData eapGraph(const nlohmann::json& j);

/// The faithfulness curve of an `eap` document run with --faithfulness (its "faithfulness" object):
/// faithfulness over the fraction of edges kept. InputError when the object is malformed.
views::LinePlotData eapFaithfulnessLine(const nlohmann::json& j);

/// The eap panel's edge action: the edge patched alone (analysis::patchEdges) on the dataset of the result's
/// form, reported as "Patched U → V (r) alone: LD a → b (Δ d) over N prompts".
QString patchEapEdge(const AnalysisInput& in, const QJsonObject& form, const QString& upstream, const QString& downstream,
                     const QString& receiver, const RunContext& ctx);

}  // namespace mechscope::gui
