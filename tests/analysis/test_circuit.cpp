// Path patching and circuit discovery on the planted model: the path-patching shortcut equals the
// hook-by-hook two-pass protocol, discovery returns exactly the planted circuits, their overlap is
// the planted overlap (Jaccard 1/3, |∩|/min 1/2).
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <fmt/format.h>

#include "analysis/circuits/circuit_discovery.hpp"
#include "analysis/circuits/overlap.hpp"
#include "core/common/errors.hpp"
#include "tests/analysis/causal_test_support.hpp"

namespace mechscope::analysis {
namespace {

std::vector<HeadRef> headsOf(const CircuitResult& r) {
  std::vector<HeadRef> v;
  for (const auto& h : r.heads) v.push_back(h.head);
  std::sort(v.begin(), v.end());
  return v;
}

/// The IOI protocol written hook by hook: every head's z and every MLP frozen to the clean run, the
/// sender's z from the corrupted run; pass 1 records the receivers, pass 2 substitutes them.
at::Tensor referencePathPatch(const HookedTransformer& m, const PatchInputs& in, HeadRef sender,
                              const std::vector<Receiver>& receivers) {
  const ActivationCache clean = m.runWithCache(in.clean, {"blocks.*.attn.hook_z", "blocks.*.hook_mlp_out"});
  const ActivationCache corrupt = m.runWithCache(in.corrupt, {"blocks.*.attn.hook_z"});
  HookSet freeze;
  freeze.add("blocks.*.attn.hook_z", [&](const at::Tensor&, const HookContext& hc) -> std::optional<at::Tensor> {
    at::Tensor z = clean.get(hc.name).clone();
    if (hc.layer == sender.layer) z.select(2, sender.head).copy_(corrupt.get(hc.name).select(2, sender.head));
    return z;
  });
  freeze.add("blocks.*.hook_mlp_out", [&](const at::Tensor&, const HookContext& hc) -> std::optional<at::Tensor> {
    return clean.get(hc.name);
  });
  std::map<std::string, at::Tensor> rec;
  for (const auto& r : receivers) {
    const std::string name = fmt::format("blocks.{}.attn.hook_{}", r.head.layer, toString(r.site));
    freeze.add(name, [&rec](const at::Tensor& t, const HookContext& hc) -> std::optional<at::Tensor> {
      rec[hc.name] = t;
      return std::nullopt;
    });
  }
  const ForwardResult a = m.forward(in.clean, {}, &freeze);
  if (receivers.empty()) return logitDiff(a.logits, in.correct, in.incorrect);
  HookSet sub;
  for (const auto& r : receivers) {
    const std::string name = fmt::format("blocks.{}.attn.hook_{}", r.head.layer, toString(r.site));
    const int h = r.head.head;
    sub.add(name, [&rec, h](const at::Tensor& t, const HookContext& hc) -> std::optional<at::Tensor> {
      at::Tensor out = t.clone();
      out.select(2, h).copy_(rec.at(hc.name).select(2, h));
      return out;
    });
  }
  return logitDiff(m.forward(in.clean, {}, &sub).logits, in.correct, in.incorrect);
}

/// |a − b| ≤ 1e-4 + 1e-5·|b|: the planted residual stream reaches norms of ~85 and logit differences
/// of ~20, so batched and one-at-a-time forwards (different matmul groupings) differ by ~1e-4 in fp32.
double excess(const at::Tensor& a, const at::Tensor& b) {
  return ((a - b).abs() - (b.abs() * 1e-5 + 1e-4)).max().item<double>();
}

TEST(PathPatching, EqualsHookByHookProtocol) {
  const auto& m = *test::causalPlanted().model;
  const PatchInputs in = test::plantedInputs(planted::ioiPrompts(6, 21));
  // Stage 1 (to the logits) for a mover and a non-mover.
  PathPatchParams p;
  p.senders = {{3, 0}, {2, 1}, {1, 1}};
  const PathPatchResult r1 = pathPatch(m, in, p);
  for (size_t i = 0; i < p.senders.size(); ++i) {
    const at::Tensor ref = referencePathPatch(m, in, p.senders[i], {});
    EXPECT_LE(excess(r1.metricPatched[static_cast<int64_t>(i)], ref), 0.0) << i;
  }
  // Stage 2: senders → q/k/v of the movers.
  PathPatchParams q;
  q.senders = {{2, 1}, {1, 1}, {0, 0}};
  for (int h : {0, 1})
    for (auto s : {ReceiverSite::Q, ReceiverSite::K, ReceiverSite::V}) q.receivers.push_back({{3, h}, s});
  const PathPatchResult r2 = pathPatch(m, in, q);
  for (size_t i = 0; i < q.senders.size(); ++i) {
    const at::Tensor ref = referencePathPatch(m, in, q.senders[i], q.receivers);
    EXPECT_LE(excess(r2.metricPatched[static_cast<int64_t>(i)], ref), 0.0) << i;
  }
  // S-inhibition 2.1 carries most of the LD gap into the movers' queries.
  EXPECT_GT(r2.effect[2][1].item<double>(), 0.5);
  EXPECT_NEAR(r2.effect[0][0].item<double>(), 0.0, 0.02);
  // Scores in the IOI convention: 100·(patched − clean)/clean.
  const double mean = r2.metricPatched[0].mean().item<double>();
  EXPECT_NEAR(r2.scores[2][1].item<double>(), 100.0 * (mean - r2.metricClean) / r2.metricClean, 1e-3);
}

TEST(PathPatching, BadHeadsAreInputErrors) {
  const auto& m = *test::causalPlanted().model;
  const PatchInputs in = test::plantedInputs(planted::ioiPrompts(2, 1));
  PathPatchParams p;
  p.senders = {{99, 0}};
  EXPECT_THROW(pathPatch(m, in, p), InputError);
  p.senders = {{3, 0}};
  p.receivers = {{{2, 1}, ReceiverSite::Q}};
  EXPECT_THROW(pathPatch(m, in, p), InputError);  // sender not below the receiver
  EXPECT_THROW(parseReceiverSite("w"), InputError);
}

TEST(Circuit, PlantedIoiAndColoredObjectsAndOverlap) {
  const auto& m = *test::causalPlanted().model;
  const PatchInputs ioi = test::plantedInputs(planted::ioiPrompts(12, 7));
  const PatchInputs co = test::plantedInputs(planted::coloredObjectsPrompts(8, 7));
  const CircuitResult a = discoverCircuit(m, ioi, {}, "ioi");
  const CircuitResult b = discoverCircuit(m, co, {}, "colored-objects");
  const std::vector<HeadRef> ioiExpected = {{1, 1}, {2, 1}, {3, 0}, {3, 1}};
  const std::vector<HeadRef> coExpected = {{0, 0}, {1, 2}, {3, 0}, {3, 1}};
  EXPECT_EQ(headsOf(a), ioiExpected);
  EXPECT_EQ(headsOf(b), coExpected);
  for (const auto& h : a.heads) {
    if (h.head.layer == 3) { EXPECT_EQ(h.role, "mover"); }
    if (h.head == HeadRef{2, 1}) { EXPECT_EQ(h.stage, 2); }
    if (h.head == HeadRef{1, 1}) { EXPECT_EQ(h.stage, 3); }
  }
  for (const auto& h : b.heads)
    if (h.head == HeadRef{0, 0}) { EXPECT_EQ(h.stage, 3); }
  // Spurious heads carry ~0 of the LD gap at every stage (the last stage selects nothing).
  for (const auto* r : {&a, &b})
    for (const auto& st : r->stages) {
      at::Tensor e = st.effect.abs().clone();
      double minSelected = 1e9;
      for (const auto& h : st.selected) {
        minSelected = std::min(minSelected, e[h.layer][h.head].item<double>());
        e[h.layer][h.head] = 0;
      }
      std::printf("[circuit] %s stage %d: %zu selected, min selected |effect| %.4f, max other |effect| %.2e\n",
                  r->task.c_str(), st.index, st.selected.size(), st.selected.empty() ? 0.0 : minSelected,
                  e.max().item<double>());
      EXPECT_LT(e.max().item<double>(), 0.01) << r->task << " stage " << st.index;
    }
  const OverlapResult o = circuitOverlap(a, b);
  EXPECT_NEAR(o.headline.jaccard, 1.0 / 3.0, 1e-12);
  EXPECT_NEAR(o.headline.overMin, 0.5, 1e-12);
  EXPECT_EQ(o.headline.shared, (std::vector<HeadRef>{{3, 0}, {3, 1}}));
  EXPECT_EQ(o.headline.onlyA, (std::vector<HeadRef>{{1, 1}, {2, 1}}));
  EXPECT_EQ(o.headline.onlyB, (std::vector<HeadRef>{{0, 0}, {1, 2}}));
  ASSERT_EQ(o.sweep.size(), 4u);
  // JSON round trip keeps heads and stages; the overlap of the reloaded circuits is the same.
  const CircuitResult a2 = circuitFromJson(toJson(a), "a.json"), b2 = circuitFromJson(toJson(b), "b.json");
  EXPECT_EQ(headsOf(a2), ioiExpected);
  EXPECT_NEAR(circuitOverlap(a2, b2).headline.jaccard, 1.0 / 3.0, 1e-12);
  EXPECT_EQ(toJson(circuitOverlap(a2, b2))["sweep"].size(), 4u);
}

TEST(Overlap, SetArithmetic) {
  const SetOverlap o = setOverlap({{1, 1}, {2, 2}, {3, 3}}, {{3, 3}, {4, 4}});
  EXPECT_NEAR(o.jaccard, 0.25, 1e-12);
  EXPECT_NEAR(o.overMin, 0.5, 1e-12);
  EXPECT_EQ(setOverlap({}, {}).jaccard, 0.0);
  EXPECT_THROW(circuitFromJson(nlohmann::json::array(), "x.json"), InputError);
}

}  // namespace
}  // namespace mechscope::analysis
