// Path patching and circuit discovery on the planted model: the path-patching shortcut equals the
// hook-by-hook two-pass protocol, discovery returns exactly the planted circuits, their overlap is
// the planted overlap (Jaccard 1/3, |∩|/min 1/2).
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>

#include <fmt/format.h>

#include "analysis/circuits/circuit_discovery.hpp"
#include "analysis/circuits/overlap.hpp"
#include "analysis/common/datasets.hpp"
#include "tests/common/rounding_bounds.hpp"
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

/// How the hook-by-hook reference runs: MLPs frozen or recomputed, Wang (every head's z frozen at every
/// position) or Merullo (frozen only at the sender positions), and where senders are patched and
/// receivers substituted ([batch, pos] bool; undefined = every position).
struct ReferencePathOptions {
  bool freezeMlps = false;
  bool merullo = false;
  at::Tensor sendPos;
  at::Tensor recvPos;
};

/// [batch, pos] bool with each prompt's position of `pos` [batch] set.
at::Tensor rolePositionMask(const at::Tensor& pos, int64_t P) {
  return at::zeros({pos.size(0), P}, at::kBool).scatter_(1, pos.to(at::kLong).view({-1, 1}), true);
}

/// The path-patching protocol written hook by hook, one forward pair per sender (Wang et al.'s
/// ioi_utils.path_patching, Merullo et al.'s patching_utils.path_patching): pass 1 is the clean run
/// with every head's z frozen to the clean run where the variant freezes, the sender's z from the
/// corrupted run at the sender positions, MLPs frozen or recomputed; it records the receivers. Pass 2
/// is the clean run with the receivers substituted at the receiver positions.
at::Tensor referencePathPatch(const HookedTransformer& m, const PatchInputs& in, HeadRef sender,
                              const std::vector<Receiver>& receivers, const ReferencePathOptions& o = {}) {
  const int64_t B = in.clean.size(0), P = in.clean.size(1);
  const at::Tensor sendPos = o.sendPos.defined() ? o.sendPos : at::ones({B, P}, at::kBool);  // [batch, pos]
  const at::Tensor recvPos = o.recvPos.defined() ? o.recvPos : sendPos;                       // [batch, pos]
  const at::Tensor freezePos = o.merullo ? sendPos : at::ones({B, P}, at::kBool);             // [batch, pos]
  const ActivationCache clean = m.runWithCache(in.clean, {"blocks.*.attn.hook_z", "blocks.*.hook_mlp_out"});
  const ActivationCache corrupt = m.runWithCache(in.corrupt, {"blocks.*.attn.hook_z"});
  HookSet freeze;
  freeze.add("blocks.*.attn.hook_z", [&](const at::Tensor& t, const HookContext& hc) -> std::optional<at::Tensor> {
    at::Tensor z = at::where(freezePos.view({B, P, 1, 1}), clean.get(hc.name), t);  // [batch, pos, head, d_head]
    if (hc.layer == sender.layer) {
      at::Tensor zh = z.select(2, sender.head);  // [batch, pos, d_head] view
      zh.copy_(at::where(sendPos.view({B, P, 1}), corrupt.get(hc.name).select(2, sender.head), zh));
    }
    return z;
  });
  if (o.freezeMlps)
    freeze.add("blocks.*.hook_mlp_out", [&](const at::Tensor& t, const HookContext& hc) -> std::optional<at::Tensor> {
      return at::where(freezePos.view({B, P, 1}), clean.get(hc.name), t);
    });
  std::map<std::string, at::Tensor> rec;
  for (const auto& r : receivers) {
    const std::string name = fmt::format("blocks.{}.attn.hook_{}", r.head.layer, toString(r.site));
    freeze.add(name, [&rec](const at::Tensor& t, const HookContext& hc) -> std::optional<at::Tensor> {
      rec[hc.name] = t.clone();
      return std::nullopt;
    });
  }
  const ForwardResult a = m.forward(in.clean, {}, &freeze);
  if (receivers.empty()) return logitDiff(a.logits, in.correct, in.incorrect);
  HookSet sub;
  for (const auto& r : receivers) {
    const std::string name = fmt::format("blocks.{}.attn.hook_{}", r.head.layer, toString(r.site));
    const int h = r.head.head;
    sub.add(name, [&rec, &recvPos, h, B, P](const at::Tensor& t, const HookContext& hc) -> std::optional<at::Tensor> {
      at::Tensor out = t.clone();  // [batch, pos, head, d_head]
      at::Tensor oh = out.select(2, h);
      oh.copy_(at::where(recvPos.view({B, P, 1}), rec.at(hc.name).select(2, h), oh));
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

TEST(PathPatching, EqualsHookByHookProtocolOnPlantedModel) {
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

// Issue #19: batched path patching equals the one-forward-pair-per-sender loop in every protocol
// variant, on the trained GPT-2 (real MLPs, so recomputed and frozen MLPs differ) with role positions.
TEST(PathPatching, TrainedGpt2BatchedEqualsLoopInEveryVariant) {
  namespace fs = std::filesystem;
  const fs::path dir = fs::path(MECHSCOPE_SOURCE_DIR) / "tests" / "data" / "trained" / "gpt2-ioi";
  if (!fs::exists(dir / "model.safetensors") || !fs::exists(dir / "tokenizer.json")) GTEST_SKIP() << dir << " is absent";
  const auto model = HookedTransformer::load(dir, LoadOptions{"cpu", "fp32"});
  const Tokenizer tok = Tokenizer::fromFile(dir);
  IoiOptions io;
  io.n = 12;
  io.seed = 5;
  CausalDataset ds = ioiDataset(tok, io);
  tokenizeDataset(ds, &tok, tok.bosId() ? tok.bosId() : model->config().bosTokenId);
  std::vector<PatchGroup> groups = toPatchGroups(ds);
  const PatchGroup& g = *std::max_element(groups.begin(), groups.end(), [](const PatchGroup& a, const PatchGroup& b) {
    return a.inputs.clean.size(0) < b.inputs.clean.size(0);
  });
  ASSERT_GE(g.inputs.clean.size(0), 2);
  const int64_t P = g.inputs.clean.size(1);
  ForwardOptions last;
  last.logitsLastOnly = true;
  const double maxAbsLogit = model->forward(g.inputs.clean, last).logits.abs().max().item<double>();
  const double bound = test::logitDifferenceOrderBound(model->config(), P, maxAbsLogit);
  struct Stage {
    std::vector<Receiver> receivers;
    std::string role;
  };
  const std::vector<Stage> stages = {{{}, "END"},
                                     {{{{3, 0}, ReceiverSite::Q}, {{3, 1}, ReceiverSite::Q}}, "END"},
                                     {{{{2, 0}, ReceiverSite::V}}, "S2"},
                                     {{{{2, 3}, ReceiverSite::K}}, "S1+1"}};
  double worst = 0;
  for (const bool merullo : {false, true})
    for (const bool freezeMlps : {false, true})
      for (const auto& st : stages) {
        SCOPED_TRACE(fmt::format("{} {} {}", merullo ? "merullo" : "wang", freezeMlps ? "MLPs frozen" : "MLPs recomputed", st.role));
        PathPatchParams p;
        p.variant = merullo ? PathVariant::Merullo : PathVariant::Ioi;
        p.freezeMlps = freezeMlps;
        p.receivers = st.receivers;
        p.positionRole = st.role;
        p.senders = {{0, 1}, {1, 1}};
        if (st.receivers.empty() || st.receivers[0].head.layer == 3) p.senders.push_back({2, 0});
        p.maxBatchRows = 2 * g.inputs.clean.size(0);  // two senders per batched forward: batching across senders is exercised
        const PathPatchResult r = pathPatch(*model, g.inputs, p);
        ReferencePathOptions o;
        o.freezeMlps = freezeMlps;
        o.merullo = merullo;
        o.sendPos = rolePositionMask(g.inputs.roles.at(st.role), P);
        for (size_t i = 0; i < p.senders.size(); ++i) {
          const at::Tensor ref = referencePathPatch(*model, g.inputs, p.senders[i], p.receivers, o).to(at::kDouble);
          const double err = (r.metricPatched[static_cast<int64_t>(i)].to(at::kDouble) - ref).abs().max().item<double>();
          EXPECT_LE(err, bound) << "sender " << p.senders[i].layer << "." << p.senders[i].head;
          worst = std::max(worst, err);
        }
      }
  std::printf("[path-patching] trained GPT-2: max |batched - loop| %.2e (bound %.2e)\n", worst, bound);
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
