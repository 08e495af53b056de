// `mechscope-cli overlap A.json B.json`: overlap of two circuits written by `circuit --json`.
#include <fstream>
#include <iostream>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "analysis/circuits/overlap.hpp"
#include "app/cli/command.hpp"
#include "core/common/errors.hpp"

namespace mechscope::cli {
namespace {

struct OverlapOptions {
  std::string a, b, json;
};

analysis::CircuitResult readCircuit(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw InputError(fmt::format("{}: cannot open the circuit file", path));
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(in);
  } catch (const nlohmann::json::exception& e) {
    throw InputError(fmt::format("{}: malformed JSON ({})", path, e.what()));
  }
  return analysis::circuitFromJson(j, path);
}

std::string names(const std::vector<analysis::HeadRef>& hs) {
  std::string s;
  for (const auto& h : hs) s += fmt::format("{}{}.{}", s.empty() ? "" : " ", h.layer, h.head);
  return s.empty() ? "-" : s;
}

void runOverlap(const OverlapOptions& o) {
  const auto a = readCircuit(o.a), b = readCircuit(o.b);
  const analysis::OverlapResult r = analysis::circuitOverlap(a, b);
  nlohmann::json j = analysis::toJson(r);
  j["a"] = o.a;
  j["b"] = o.b;
  std::cout << fmt::format("Jaccard {:.4f}   |A∩B|/min {:.4f}\n", r.headline.jaccard, r.headline.overMin);
  std::cout << fmt::format("shared: {}\nonly A: {}\nonly B: {}\n", names(r.headline.shared), names(r.headline.onlyA),
                           names(r.headline.onlyB));
  const auto& sp = r.stagePairs;
  std::cout << fmt::format("(stage, head) pairs: {}/{} shared (|A| {}, |B| {}; Jaccard {:.4f}, |A∩B|/min {:.4f})\n", sp.shared,
                           sp.unionSize, sp.sizeA, sp.sizeB, sp.jaccard, sp.overMin);
  for (const auto& st : sp.stages)
    std::cout << fmt::format("  stage {}: shared {}  only A {}  only B {}\n", st.stage, names(st.overlap.shared), names(st.overlap.onlyA),
                             names(st.overlap.onlyB));
  for (const auto& p : r.sweep)
    std::cout << fmt::format("top {:>4}%: |A| {:>3} |B| {:>3}  Jaccard {:.4f}  |A∩B|/min {:.4f}\n", p.percent, p.sizeA,
                             p.sizeB, p.overlap.jaccard, p.overlap.overMin);
  if (!o.json.empty()) {
    std::ofstream out(o.json);
    if (!out) throw InputError(fmt::format("{}: cannot write --json", o.json));
    out << j.dump(2) << '\n';
  }
}

const RegisterCommand reg_cmd_overlap{"overlap", 43, [](CLI::App& root) {
  auto o = std::make_shared<OverlapOptions>();
  auto* sub = root.add_subcommand("overlap", "Overlap of two circuits: Jaccard, |A∩B|/min, shared heads, top-% sweep");
  sub->add_option("A", o->a, "circuit JSON (circuit --json)")->required();
  sub->add_option("B", o->b, "circuit JSON")->required();
  sub->add_option("--json", o->json, "write the overlap as JSON");
  sub->callback([o] { runOverlap(*o); });
}};

}  // namespace
}  // namespace mechscope::cli
