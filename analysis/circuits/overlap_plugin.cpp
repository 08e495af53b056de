// Circuit overlap in the plugin shape: `mechscope-cli overlap A B`, the GUI's Overlap panel and batch plans
// derive from this table. It has no model: its inputs are two `circuit --json` results (PluginInput::Files),
// read here so every front end reports a bad file the same way. The --json document is toJson(OverlapResult)
// with the inputs' paths (a, b) and the circuits' tasks (task_a, task_b); the terminal summary is the
// hand-written command's text.
#include <fstream>

#include <fmt/format.h>

#include "analysis/circuits/overlap.hpp"
#include "analysis/common/analysis_plugin.hpp"
#include "core/common/errors.hpp"

namespace mechscope::analysis {

namespace {

CircuitResult overlapInput(const PluginInputs& in, size_t i) {
  const std::string& source = in.files.at(i);
  if (i < in.documents.size() && !in.documents[i].is_null()) return circuitFromJson(in.documents[i], source);
  std::ifstream f(source);
  if (!f) throw InputError(fmt::format("{}: cannot open the circuit file", source));
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(f);
  } catch (const nlohmann::json::exception& e) {
    throw InputError(fmt::format("{}: malformed JSON ({})", source, e.what()));
  }
  return circuitFromJson(j, source);
}

std::string overlapHeadNames(const std::vector<HeadRef>& hs) {
  std::string s;
  for (const auto& h : hs) s += fmt::format("{}{}.{}", s.empty() ? "" : " ", h.layer, h.head);
  return s.empty() ? "-" : s;
}

/// What the hand-written command printed: the headline sets, the (stage, head) pairs and the top-% sweep.
std::string overlapSummary(const OverlapResult& r) {
  std::string s = fmt::format("Jaccard {:.4f}   |A∩B|/min {:.4f}\n", r.headline.jaccard, r.headline.overMin);
  s += fmt::format("shared: {}\nonly A: {}\nonly B: {}\n", overlapHeadNames(r.headline.shared), overlapHeadNames(r.headline.onlyA),
                   overlapHeadNames(r.headline.onlyB));
  const auto& sp = r.stagePairs;
  s += fmt::format("(stage, head) pairs: {}/{} shared (|A| {}, |B| {}; Jaccard {:.4f}, |A∩B|/min {:.4f})\n", sp.shared, sp.unionSize,
                   sp.sizeA, sp.sizeB, sp.jaccard, sp.overMin);
  for (const auto& st : sp.stages)
    s += fmt::format("  stage {}: shared {}  only A {}  only B {}\n", st.stage, overlapHeadNames(st.overlap.shared),
                     overlapHeadNames(st.overlap.onlyA), overlapHeadNames(st.overlap.onlyB));
  for (const auto& p : r.sweep)
    s += fmt::format("top {:>4}%: |A| {:>3} |B| {:>3}  Jaccard {:.4f}  |A∩B|/min {:.4f}\n", p.percent, p.sizeA, p.sizeB,
                     p.overlap.jaccard, p.overlap.overMin);
  if (!s.empty()) s.pop_back();  // the CLI ends the line
  return s;
}

AnalysisResult runOverlap(const PluginInputs& in, const ParamValues&, const RunContext* ctx) {
  if (in.files.size() != 2) throw InputError("overlap: needs two circuits (A and B)");
  const CircuitResult a = overlapInput(in, 0), b = overlapInput(in, 1);
  if (ctx) ctx->check();
  const OverlapResult r = circuitOverlap(a, b);
  if (ctx) ctx->step(1, 1, "overlap");
  AnalysisResult out;
  out.name = "overlap";
  out.json = toJson(r);
  out.json["a"] = in.files[0];
  out.json["b"] = in.files[1];
  out.json["task_a"] = a.task;
  out.json["task_b"] = b.task;
  out.summaryLine = overlapSummary(r);
  return out;
}

}  // namespace

AnalysisPlugin overlapPlugin() {
  AnalysisPlugin p = makePlugin("overlap", "Overlap", "overlap of two circuits: Jaccard, |A&B|/min, threshold sweep", PluginInput::Files,
                                runOverlap);
  auto& d = p.descriptor;
  // Plan keys only (no option): in a batch plan each names a circuit item, "CIRCUIT_ID@INPUT_ID".
  d.params = {makeParam("a", ParamType::String, "", "circuit A: a `circuit --json` file (in the GUI, empty: the workspace's second-to-last circuit)"),
              makeParam("b", ParamType::String, "", "circuit B: a `circuit --json` file (in the GUI, empty: the workspace's last circuit)")};
  d.required = {"a", "b"};
  d.inputFiles = {"a", "b"};
  d.inputFilesFrom = "circuit";
  d.headlineKeys = {"jaccard", "intersection_over_min"};
  return p;
}

}  // namespace mechscope::analysis
