// Circuit evaluation against a port of the official protocol (issue #22, docs/metrics.md §12.7):
// scripts/reference/evaluate_graph_ref.py re-implements hannamw/EAP-IG's evaluate_graph (patching),
// Graph.apply_topn / Graph.prune and MIB-circuit-track's evaluate_area_under_curve in fp64 on its own
// hooked GPT-2 forward, for the trained GPT-2 models, 40 prompt pairs and eap_ref.py's EAP-IG scores.
// - EvaluateGraphReference: faithfulnessAtFractions (MIB's sweep: sizes, edges left after pruning, mean LD,
//   faithfulness, CPR, CMD, average), faithfulnessCurve at the same sizes, and patchEdges on the 20
//   edges of largest |score| (per-prompt LD and effect) equal the port, with mechscope in fp64 and in fp32.
// - EvaluateGraphInput: a fraction outside [0, 1] is refused before compute.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <iostream>

#include <nlohmann/json.hpp>

#include "analysis/common/datasets.hpp"
#include "analysis/eap/edge_attribution.hpp"
#include "analysis/eap/edge_patching.hpp"
#include "core/common/errors.hpp"
#include "core/model/hooked_transformer.hpp"
#include "tests/analysis/eap_test_support.hpp"

namespace mechscope::analysis {
namespace {

namespace fs = std::filesystem;

// ------------------------------------------------------------------------------------------------
// Error budget of one logit difference, mechscope against the fp64 port (whose own error, ~1e-14, is
// measured by its self-checks: every edge patched vs the corrupted run, one edge vs the patch written
// directly). Both read the same bf16-stored weights, exact in fp32 and fp64.
// - fp32 (u = 2⁻²⁴ ≈ 6e-8): a patched receiver input is the residual plus Σ_u (a_corrupt(u) − a_current(u))
//   over ≤ 21 sources, each |a| ≲ 30 on these models, so it carries ≤ 21·u·30 ≈ 4e-5 per coordinate
//   against coordinates of order 1–10 (a relative 1e-5, as the plain forwards' parity with transformers,
//   check_fallback.py); layer norm, 4 blocks and the unembedding amplify a relative error by at most a
//   few: 1e-4 · max(1, |LD|) (the bound of test_edge_patching.cpp, here against an exact reference).
// - fp64: the residual stream, norms, MLPs and the patch sums are fp64 (u = 2⁻⁵³, negligible), but the
//   forward keeps attention scores and softmax in fp32 (core/model/forward_pass.cpp), and logitDiff reports
//   LDs in fp32 (|LD|·2⁻²⁴). A score s rounded to fp32 moves its probability by a relative ≤ u·(|s| +
//   Σ_j p_j|s_j|) ≤ 2u·max|s|, and the softmax adds ≤ 3u, so a head's output is off by a relative
//   ≤ (2·max|s| + 3)·u; carried to LD like the fp32 budget's 1e-5 → 1e-4 (×10), which also covers the
//   fp32 LD. The port writes max|s| over every run it makes, patched ones included (28 on gpt2-ioi, 50 on
//   gpt2-co: 3.5e-5 and 6.1e-5 · max(1, |LD|)).
// Means over prompts carry the mean of the per-prompt bounds. Faithfulness f = (m − c) / (k − c) with
// m, k, c within δm, δk, δc moves by at most (δm + |f|·δk + |1 − f|·δc) / |k − c| (first order); CPR,
// CMD (|1 − f| is 1-Lipschitz) and the average move by the same trapezoid / mean of those per-point bounds.

/// The relative LD bound (× max(1, |LD|)) of a run: 1e-4 in fp32; in fp64 10 × (2·max|s| + 3)·2⁻²⁴ for the
/// largest |scaled attention score| max|s| the port saw (the fp32 budget's ×10 from activation to LD).
double egrRelBound(bool fp64, double maxScore) { return fp64 ? 10.0 * (2.0 * maxScore + 3.0) * std::ldexp(1.0, -24) : 1e-4; }

double egrLdBound(double ld, double rel) { return rel * std::max(1.0, std::abs(ld)); }

double egrMeanBound(const nlohmann::json& perPrompt, double rel) {
  double s = 0;
  for (const auto& v : perPrompt) s += egrLdBound(v.get<double>(), rel);
  return s / static_cast<double>(perPrompt.size());
}

fs::path egrTrainedDir() { return fs::path(MECHSCOPE_SOURCE_DIR) / "tests" / "data" / "trained"; }

/// The reference's score matrix [n_forward, n_backward] fp64.
at::Tensor egrScores(const nlohmann::json& ref) {
  const auto& S = ref["scores"];
  at::Tensor s = at::zeros({static_cast<int64_t>(S.size()), static_cast<int64_t>(S[0].size())}, at::kDouble);
  auto acc = s.accessor<double, 2>();
  for (size_t f = 0; f < S.size(); ++f)
    for (size_t b = 0; b < S[f].size(); ++b) acc[static_cast<int64_t>(f)][static_cast<int64_t>(b)] = S[f][b].get<double>();
  return s;
}

/// The whole comparison for one trained model ("gpt2-ioi", "gpt2-co").
void egrCompare(const std::string& name) {
  const fs::path dir = egrTrainedDir() / name;
  std::ifstream in(egrTrainedDir() / "references" / ("evaluate_graph_" + name + ".json"));
  if (!fs::exists(dir / "model.safetensors") || !in) GTEST_SKIP() << dir << " or its evaluate_graph reference is absent";
  const nlohmann::json ref = nlohmann::json::parse(in);
  const CausalDataset ds = test::eapDatasetOf(ref);
  int dropped = -1;
  const std::vector<PatchGroup> groups = toPatchGroups(ds, &dropped);
  ASSERT_EQ(dropped, 0);
  const at::Tensor scores = egrScores(ref);
  const auto& mib = ref["mib"];
  const auto& points = mib["points"];
  const double clean = ref["metric_clean"].get<double>(), corrupt = ref["metric_corrupt"].get<double>();
  for (const bool fp64 : {true, false}) {
    SCOPED_TRACE(name + (fp64 ? " fp64" : " fp32"));
    const auto model = HookedTransformer::load(dir, LoadOptions{"cpu", fp64 ? "fp64" : "fp32"});
    const EdgeGraph G = edgeGraphOf(model->config());
    ASSERT_EQ(G.edgeCount(), ref["n_edges"].get<int64_t>());
    for (int64_t f = 0; f < G.nForward(); ++f) ASSERT_EQ(G.forwardName(f), ref["forward_nodes"][f].get<std::string>());
    for (int64_t b = 0; b < G.nBackward(); ++b) {
      ASSERT_EQ(G.backwardNode(b), ref["receivers"][b]["node"].get<std::string>());
      ASSERT_EQ(toString(G.backwardReceiver(b)), ref["receivers"][b]["receiver"].get<std::string>());
    }
    const double rel = egrRelBound(fp64, ref["max_abs_attn_score"].get<double>());
    const double dClean = egrMeanBound(ref["metric_clean_per_prompt"], rel), dCorrupt = egrMeanBound(ref["metric_corrupt_per_prompt"], rel);
    const double span = std::abs(clean - corrupt);

    // MIB's sweep: the circuits (sizes, pruning) are discrete and equal exactly; the numbers within the budget.
    const auto t0 = std::chrono::steady_clock::now();
    const FaithfulnessCurve c = faithfulnessAtFractions(*model, groups, scores, mib["percentages"].get<std::vector<double>>());
    ASSERT_EQ(c.edgesKept.size(), points.size());
    EXPECT_NEAR(c.metricClean, clean, dClean);
    EXPECT_NEAR(c.metricCorrupt, corrupt, dCorrupt);  // the corrupted run = the empty circuit (the port's check)
    std::vector<double> dF;
    double worstMetric = 0, worstF = 0;
    for (size_t i = 0; i < points.size(); ++i) {
      const auto& p = points[i];
      EXPECT_EQ(c.fraction[i], p["pct"].get<double>()) << i;
      EXPECT_EQ(c.edgesKept[i], p["edges_kept"].get<int64_t>()) << i;
      EXPECT_EQ(c.edgesAfterPruning[i], p["edges_after_pruning"].get<int64_t>()) << i;
      const double dm = egrMeanBound(p["metric_per_prompt"], rel), f = p["faithfulness"].get<double>();
      EXPECT_NEAR(c.metric[i], p["metric"].get<double>(), dm) << "pct " << p["pct"];
      dF.push_back((dm + std::abs(f) * dClean + std::abs(1 - f) * dCorrupt) / span);
      EXPECT_NEAR(c.faithfulness[i], f, dF.back()) << "pct " << p["pct"];
      worstMetric = std::max(worstMetric, std::abs(c.metric[i] - p["metric"].get<double>()));
      worstF = std::max(worstF, std::abs(c.faithfulness[i] - f));
    }
    double dArea = 0, dAverage = 0;
    for (size_t i = 1; i < dF.size(); ++i) dArea += (c.fraction[i] - c.fraction[i - 1]) * (dF[i] + dF[i - 1]) / 2;
    for (double d : dF) dAverage += d / static_cast<double>(dF.size());
    EXPECT_NEAR(c.cpr, mib["area_under"].get<double>(), dArea);
    EXPECT_NEAR(c.cmd, mib["area_from_1"].get<double>(), dArea);
    EXPECT_NEAR(c.average, mib["average"].get<double>(), dAverage);

    // The same circuits by size (faithfulnessCurve; fp32 only, as it repeats the forwards): same metrics,
    // x axis n / edges.
    if (!fp64) {
      std::vector<int64_t> sizes;
      for (const auto& p : points) sizes.push_back(p["edges_kept"].get<int64_t>());
      const FaithfulnessCurve bySize = faithfulnessCurve(*model, groups, scores, sizes);
      for (size_t i = 0; i < bySize.edgesKept.size(); ++i) {
        size_t k = 0;
        while (points[k]["edges_kept"].get<int64_t>() != bySize.edgesKept[i]) ++k;
        EXPECT_NEAR(bySize.metric[i], points[k]["metric"].get<double>(), egrMeanBound(points[k]["metric_per_prompt"], rel)) << "n " << bySize.edgesKept[i];
        EXPECT_EQ(bySize.fraction[i], static_cast<double>(bySize.edgesKept[i]) / static_cast<double>(G.edgeCount()));
      }
    }

    // Each of the top edges patched alone: per prompt (dataset order) and the mean effect.
    std::vector<EdgeRef> edges;
    for (const auto& e : ref["single_edges"]) edges.push_back({e["forward"].get<int64_t>(), e["backward"].get<int64_t>()});
    const auto t1 = std::chrono::steady_clock::now();
    const EdgePatchResult ex = patchEdges(*model, groups, edges);
    const auto t2 = std::chrono::steady_clock::now();
    double worstEdge = 0, worstEffect = 0;
    for (size_t i = 0; i < edges.size(); ++i) {
      const auto& e = ref["single_edges"][i];
      EXPECT_EQ(G.forwardName(edges[i].forward), e["upstream"].get<std::string>());
      const auto& per = e["metric_per_prompt"];
      for (size_t q = 0; q < per.size(); ++q) {
        const double want = per[q].get<double>(), got = ex.metricPatched[static_cast<int64_t>(i)][static_cast<int64_t>(q)].item<double>();
        EXPECT_NEAR(got, want, egrLdBound(want, rel)) << e["upstream"] << " → " << e["downstream"] << " <" << e["receiver"] << ">, prompt " << q;
        worstEdge = std::max(worstEdge, std::abs(got - want));
      }
      const double eff = ex.effect[static_cast<int64_t>(i)].item<double>();
      EXPECT_NEAR(eff, e["effect"].get<double>(), egrMeanBound(per, rel) + dClean) << e["upstream"] << " → " << e["downstream"];
      worstEffect = std::max(worstEffect, std::abs(eff - e["effect"].get<double>()));
    }
    std::cout << name << (fp64 ? " fp64" : " fp32") << ": max |Δ| metric " << worstMetric << ", faithfulness " << worstF << ", CPR "
              << std::abs(c.cpr - mib["area_under"].get<double>()) << ", CMD " << std::abs(c.cmd - mib["area_from_1"].get<double>())
              << ", average " << std::abs(c.average - mib["average"].get<double>()) << ", single-edge LD " << worstEdge << ", effect "
              << worstEffect << " (CPR " << c.cpr << ", CMD " << c.cmd << "; " << std::chrono::duration<double>(t1 - t0).count() << " s curves, "
              << std::chrono::duration<double>(t2 - t1).count() << " s single edges)\n";
  }
}

TEST(EvaluateGraphReference, Gpt2IoiEqualsTheOfficialProtocol) { egrCompare("gpt2-ioi"); }
TEST(EvaluateGraphReference, Gpt2CoEqualsTheOfficialProtocol) { egrCompare("gpt2-co"); }

TEST(EvaluateGraphInput, FractionsOutsideZeroToOneAreRefused) {
  const fs::path dir = egrTrainedDir() / "gpt2-ioi";
  std::ifstream in(egrTrainedDir() / "references" / "evaluate_graph_gpt2-ioi.json");
  if (!fs::exists(dir / "model.safetensors") || !in) GTEST_SKIP() << dir << " or its evaluate_graph reference is absent";
  const std::vector<PatchGroup> groups = toPatchGroups(test::eapDatasetOf(nlohmann::json::parse(in)));
  const auto model = HookedTransformer::load(dir, LoadOptions{"cpu", "fp32"});
  const EdgeGraph G = edgeGraphOf(model->config());
  const at::Tensor scores = at::zeros({G.nForward(), G.nBackward()}, at::kDouble);
  EXPECT_THROW(faithfulnessAtFractions(*model, groups, scores, {0.5, 1.5}), InputError);
  EXPECT_THROW(faithfulnessAtFractions(*model, groups, scores, {-0.1}), InputError);
  EXPECT_THROW(faithfulnessAtFractions(*model, groups, scores, {NAN}), InputError);
  EXPECT_THROW(faithfulnessAtFractions(*model, groups, at::zeros({3, 3}, at::kDouble), {0.5}), InputError);
  const FaithfulnessCurve ends = faithfulnessAtFractions(*model, groups, scores, {1.0, 0.0});  // sorted; both ends allowed
  EXPECT_EQ(ends.edgesKept, (std::vector<int64_t>{0, G.edgeCount()}));
}

}  // namespace
}  // namespace mechscope::analysis
