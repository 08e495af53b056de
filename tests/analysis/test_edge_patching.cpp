// Exact edge patching and the faithfulness curve (issue #22, docs/metrics.md §12.7), on the trained GPT-2
// (tests/data/trained/gpt2-ioi) and the first 8 IOI pairs of its EAP reference:
// - every edge patched is the corrupted run, none is the clean run (LD written out from the logits here);
// - a single edge patched equals the same patch written by hand with hooks and at::layer_norm, for an edge
//   into the logits, into a head's query and into an MLP;
// - many edges per batched forward equal one forward per edge; running sums and the source stack agree;
// - the exact checks reuse edgeAttribution's recorded runs (GroupRuns): fewer forwards, identical numbers;
// - the faithfulness curve runs from 0 (no edge kept) to 1 (every edge kept);
// - bad edges and score matrices are refused before compute.
#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>  // at::NoGradGuard: not pulled in by ATen.h in LibTorch 2.x
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <iostream>

#include <nlohmann/json.hpp>

#include "analysis/common/analysis_plugin.hpp"
#include "analysis/common/datasets.hpp"
#include "analysis/eap/edge_attribution.hpp"
#include "analysis/eap/edge_patching.hpp"
#include "core/common/errors.hpp"
#include "core/model/hook_names.hpp"
#include "core/model/hooked_transformer.hpp"
#include "tests/analysis/eap_test_support.hpp"

namespace mechscope::analysis {
namespace {

namespace fs = std::filesystem;

// Tolerance on a logit difference: both sides run fp32 through the same 4 layers. A patched receiver input
// is the clean input plus Σ_u (a_corrupt(u) − a_current(u)) over ≤ 21 sources (each |a| ≲ 30 on this model),
// so its rounding is ≤ 21 · 2⁻²⁴ · 30 ≈ 4e-5 per coordinate, against residual coordinates of order 1–10;
// layer norm and 4 blocks amplify a relative error by at most a few, and the logits (norm ~10) carry it:
// 1e-4 · max(1, |LD|) covers it with room. Batching the same rows differently only reorders GEMM sums (1e-6).
double ldTolerance(double ld) { return 1e-4 * std::max(1.0, std::abs(ld)); }

struct TrainedIoi {
  std::unique_ptr<HookedTransformer> model;
  CausalDataset ds;
  std::vector<PatchGroup> groups;
  bool ok = false;
  TrainedIoi() {
    const fs::path root = fs::path(MECHSCOPE_SOURCE_DIR) / "tests" / "data" / "trained";
    std::ifstream in(root / "references" / "eap_gpt2-ioi.json");
    if (!fs::exists(root / "gpt2-ioi" / "model.safetensors") || !in) return;
    ds = test::eapDatasetOf(nlohmann::json::parse(in));
    model = HookedTransformer::load(root / "gpt2-ioi", LoadOptions{"cpu", "fp32"});
    groups = toPatchGroups(ds);
    ok = !groups.empty();
  }
};

TrainedIoi& bench() {
  static TrainedIoi b;
  return b;
}

/// LD at the last position from a plain forward with `hooks` (written out: logit(answer) − logit(incorrect)).
at::Tensor handLd(const HookedTransformer& m, const PatchInputs& in, HookSet* hooks) {
  ForwardOptions opts;
  opts.logitsLastOnly = true;
  at::NoGradGuard g;
  const at::Tensor logits = m.forward(in.clean, opts, hooks).logits.select(1, -1).to(at::kDouble);  // [batch, vocab]
  return logits.gather(1, in.correct.view({-1, 1})).squeeze(1) - logits.gather(1, in.incorrect.view({-1, 1})).squeeze(1);
}

/// The activations one hook site takes on `tokens`.
at::Tensor capture(const HookedTransformer& m, const at::Tensor& tokens, const std::string& site) {
  at::Tensor out;
  HookSet hooks;
  hooks.add(site, [&out](const at::Tensor& t, const HookContext&) -> std::optional<at::Tensor> {
    out = t.detach().clone();
    return std::nullopt;
  });
  ForwardOptions opts;
  opts.logitsLastOnly = true;
  at::NoGradGuard g;
  (void)m.forward(tokens, opts, &hooks);
  return out;
}

#define NEED_BENCH()                                                                 \
  TrainedIoi& b = bench();                                                           \
  if (!b.ok) GTEST_SKIP() << "tests/data/trained/gpt2-ioi or its EAP reference is absent"; \
  const HookedTransformer& m = *b.model;                                             \
  const EdgeGraph G = edgeGraphOf(m.config())

TEST(EdgePatching, EveryEdgePatchedIsTheCorruptedRunNoneIsTheClean) {
  NEED_BENCH();
  const PatchInputs& in = b.groups.front().inputs;
  const at::Tensor all = edgeMask(G).to(at::kFloat).unsqueeze(0), none = at::zeros_like(all);
  const at::Tensor got = runPatchedVariants(m, in, at::cat({all, none}, 0));  // [2, batch]
  PatchInputs corrupt = in;
  corrupt.clean = in.corrupt;
  const at::Tensor ldCorrupt = handLd(m, corrupt, nullptr), ldClean = handLd(m, in, nullptr);
  for (int64_t i = 0; i < in.clean.size(0); ++i) {
    const double c = ldCorrupt[i].item<double>(), k = ldClean[i].item<double>();
    EXPECT_NEAR(got[0][i].item<double>(), c, ldTolerance(c)) << "prompt " << i << ": all edges patched";
    EXPECT_NEAR(got[1][i].item<double>(), k, ldTolerance(k)) << "prompt " << i << ": no edge patched";
  }
}

// A patched forward keeps running sums per (variant, receiver) pair that mixes patched and unpatched sources,
// or one stack of the sources' differences when that holds less (circuits mixing most receivers): the same
// half-random mask run alone (more mixed receivers than the 21 sources: the stack) and beside 9 empty variants
// (fewer than 10 · 21: running sums) gives the same LDs, to reordered fp32 sums.
TEST(EdgePatching, RunningSumsAndSourceStackAgree) {
  NEED_BENCH();
  const PatchInputs& in = b.groups.front().inputs;
  at::manual_seed(7);
  const at::Tensor half = edgeMask(G).to(at::kFloat) * (at::rand({G.nForward(), G.nBackward()}) < 0.5).to(at::kFloat);  // [F, B]
  int64_t mixed = 0;  // receivers with some but not all of their sources patched
  for (int64_t r = 0; r < G.nBackward(); ++r) {
    const int64_t n = half.select(1, r).narrow(0, 0, G.prevForward(r)).sum().item<int64_t>();
    mixed += n > 0 && n < G.prevForward(r);
  }
  ASSERT_GT(mixed, G.nForward());
  ASSERT_LE(mixed, 10 * G.nForward());
  const at::Tensor alone = runPatchedVariants(m, in, half.unsqueeze(0));                                            // [1, batch]
  const at::Tensor beside = runPatchedVariants(m, in, at::cat({half.unsqueeze(0), at::zeros({9, G.nForward(), G.nBackward()})}));
  for (int64_t i = 0; i < in.clean.size(0); ++i)
    EXPECT_NEAR(alone[0][i].item<double>(), beside[0][i].item<double>(), 1e-5 * std::max(1.0, std::abs(alone[0][i].item<double>()))) << i;
  const at::Tensor clean = runPatchedVariants(m, in, at::zeros({1, G.nForward(), G.nBackward()}));
  EXPECT_GT((alone - clean).abs().max().item<double>(), 0.1);  // the mask does move LD
  // Rows with nothing patched are the clean run. Not bit for bit: a batch of 10 rows and one of 1 may take
  // different GEMM blockings (LibTorch 2.x on CPU does), which moves LD by fp32 rounding only.
  EXPECT_LE((beside.narrow(0, 1, 9) - clean.expand({9, -1})).abs().max().item<double>(),
            1e-5 * std::max(1.0, clean.abs().max().item<double>()));
}

TEST(EdgePatching, OneEdgeEqualsThePatchWrittenByHand) {
  NEED_BENCH();
  const ModelConfig& c = m.config();
  const std::vector<PatchGroup> first{b.groups.front()};  // one length group: rows = its prompts in order
  const PatchInputs& in = first.front().inputs;
  const int64_t dh = c.dHead;
  // (1) a3.h2 → logits: the final residual plus (z_corrupt − z_clean)_h · W_O[h].
  {
    const at::Tensor dz = (capture(m, in.corrupt, hook::z(3)) - capture(m, in.clean, hook::z(3))).select(2, 2);  // [batch, pos, d_head]
    const at::Tensor wO = m.weights().layers[3].wO.narrow(1, 2 * dh, dh);                                   // [d_model, d_head]
    const at::Tensor delta = at::matmul(dz, wO.t());                                                         // [batch, pos, d_model]
    HookSet hooks;
    hooks.add(hook::residPost(3), [&](const at::Tensor& t, const HookContext&) -> std::optional<at::Tensor> { return t + delta; });
    const at::Tensor want = handLd(m, in, &hooks);
    const EdgePatchResult r = patchEdges(m, first, {{G.headForward(3, 2), G.logitsBackward()}});
    for (int64_t i = 0; i < want.size(0); ++i)
      EXPECT_NEAR(r.metricPatched[0][i].item<double>(), want[i].item<double>(), ldTolerance(want[i].item<double>())) << "a3.h2 → logits, prompt " << i;
  }
  // (2) input → a1.h0 (q): head 0's query from layer_norm(resid_pre + Δembeddings) · W_Q[0] + b_Q[0].
  {
    const at::Tensor dEmb = capture(m, in.corrupt, hook::residPre(0)) - capture(m, in.clean, hook::residPre(0));  // [batch, pos, d_model]
    const LayerWeights& W = m.weights().layers[1];
    at::Tensor resid;
    HookSet hooks;
    hooks.add(hook::residPre(1), [&](const at::Tensor& t, const HookContext&) -> std::optional<at::Tensor> {
      resid = t;
      return std::nullopt;
    });
    hooks.add(hook::q(1), [&](const at::Tensor& t, const HookContext&) -> std::optional<at::Tensor> {
      const at::Tensor x = at::layer_norm(resid + dEmb, {c.dModel}, W.ln1W, W.ln1B, c.normEps);
      at::Tensor q = t.clone();
      q.select(2, 0).copy_(at::matmul(x, W.wQ.narrow(0, 0, dh).t()) + W.bQ.narrow(0, 0, dh));
      return q;
    });
    const at::Tensor want = handLd(m, in, &hooks);
    const EdgePatchResult r = patchEdges(m, first, {{0, G.headBackward(1, 0, EdgeInput::Q)}});
    for (int64_t i = 0; i < want.size(0); ++i)
      EXPECT_NEAR(r.metricPatched[0][i].item<double>(), want[i].item<double>(), ldTolerance(want[i].item<double>())) << "input → a1.h0 q, prompt " << i;
  }
  // (3) m0 → m2: the MLP's ln2 of resid_mid + (mlp0_corrupt − mlp0_clean); the residual stream unchanged.
  {
    const at::Tensor dMlp = capture(m, in.corrupt, hook::mlpOut(0)) - capture(m, in.clean, hook::mlpOut(0));
    const LayerWeights& W = m.weights().layers[2];
    at::Tensor mid;
    HookSet hooks;
    hooks.add(hook::name(2, "hook_resid_mid"), [&](const at::Tensor& t, const HookContext&) -> std::optional<at::Tensor> {
      mid = t;
      return std::nullopt;
    });
    hooks.add(hook::name(2, "ln2.hook_normalized"), [&](const at::Tensor&, const HookContext&) -> std::optional<at::Tensor> {
      return at::layer_norm(mid + dMlp, {c.dModel}, W.ln2W, W.ln2B, c.normEps);
    });
    const at::Tensor want = handLd(m, in, &hooks);
    const EdgePatchResult r = patchEdges(m, first, {{G.mlpForward(0), G.mlpBackward(2)}});
    for (int64_t i = 0; i < want.size(0); ++i)
      EXPECT_NEAR(r.metricPatched[0][i].item<double>(), want[i].item<double>(), ldTolerance(want[i].item<double>())) << "m0 → m2, prompt " << i;
  }
}

TEST(EdgePatching, BatchedEdgesEqualOneForwardPerEdge) {
  NEED_BENCH();
  // One edge of every kind of source and receiver, including a key and a value input.
  const std::vector<EdgeRef> edges = {{0, G.headBackward(0, 1, EdgeInput::K)},
                                      {G.headForward(0, 3), G.headBackward(2, 1, EdgeInput::V)},
                                      {G.mlpForward(1), G.headBackward(3, 0, EdgeInput::Q)},
                                      {G.headForward(2, 0), G.mlpBackward(2)},
                                      {G.headForward(3, 3), G.logitsBackward()},
                                      {G.mlpForward(3), G.logitsBackward()},
                                      {0, G.logitsBackward()}};
  const EdgePatchResult batched = patchEdges(m, b.groups, edges, /*maxBatchRows=*/64);
  int loopForwards = 0;
  for (size_t e = 0; e < edges.size(); ++e) {
    const EdgePatchResult one = patchEdges(m, b.groups, {edges[e]}, 1);
    loopForwards += one.forwards;
    for (int64_t i = 0; i < one.metricPatched.size(1); ++i) {
      const double want = one.metricPatched[0][i].item<double>();
      EXPECT_NEAR(batched.metricPatched[static_cast<int64_t>(e)][i].item<double>(), want, 1e-5 * std::max(1.0, std::abs(want)))
          << "edge " << e << ", prompt " << i;
    }
    EXPECT_NEAR(batched.effect[static_cast<int64_t>(e)].item<double>(), one.effect[0].item<double>(), 1e-5);
  }
  EXPECT_LT(batched.forwards, loopForwards);  // several edges per forward
}

TEST(EdgePatching, FaithfulnessRunsFromNoEdgeToEveryEdge) {
  NEED_BENCH();
  EapParams p;
  const EapResult eap = edgeAttribution(m, b.groups, p);
  const int64_t E = G.edgeCount();
  const FaithfulnessCurve c = faithfulnessCurve(m, b.groups, eap.scores, {E + 5, 0, 10, 10, 100});
  ASSERT_EQ(c.edgesKept, (std::vector<int64_t>{0, 10, 100, E}));  // sorted, clamped, deduplicated
  EXPECT_NEAR(c.metricClean, eap.metricClean, ldTolerance(eap.metricClean));
  EXPECT_NEAR(c.metricCorrupt, eap.metricCorrupt, ldTolerance(eap.metricCorrupt));
  const double span = std::abs(c.metricClean - c.metricCorrupt);
  EXPECT_NEAR(c.faithfulness.front(), 0.0, ldTolerance(c.metricCorrupt) / span);
  EXPECT_NEAR(c.faithfulness.back(), 1.0, ldTolerance(c.metricClean) / span);
  EXPECT_DOUBLE_EQ(c.fraction.back(), 1.0);
  double cpr = 0;
  for (size_t i = 1; i < c.fraction.size(); ++i) cpr += (c.fraction[i] - c.fraction[i - 1]) * (c.faithfulness[i] + c.faithfulness[i - 1]) / 2;
  EXPECT_DOUBLE_EQ(c.cpr, cpr);
  // EAP's score is the first-order change of LD; report how the 10 largest compare with exact patching.
  const at::Tensor key = at::where(eap.edgeMask, eap.scores.abs(), at::full({}, -1.0, at::kDouble)).flatten();
  const at::Tensor top = std::get<1>(key.topk(10));
  std::vector<EdgeRef> edges;
  for (int64_t i = 0; i < 10; ++i) edges.push_back({top[i].item<int64_t>() / G.nBackward(), top[i].item<int64_t>() % G.nBackward()});
  const EdgePatchResult exact = patchEdges(m, b.groups, edges);
  for (int64_t i = 0; i < 10; ++i)
    std::cout << G.forwardName(edges[static_cast<size_t>(i)].forward) << " → " << G.backwardNode(edges[static_cast<size_t>(i)].backward)
              << " (" << toString(G.backwardReceiver(edges[static_cast<size_t>(i)].backward)) << "): EAP "
              << eap.scores[edges[static_cast<size_t>(i)].forward][edges[static_cast<size_t>(i)].backward].item<double>() << ", exact "
              << exact.effect[i].item<double>() << "\n";
  std::cout << "faithfulness at 0/10/100/all edges:";
  for (double f : c.faithfulness) std::cout << " " << f;
  std::cout << "; CPR " << c.cpr << ", CMD " << c.cmd << "\n";
}

/// Forwards the patched runs of `variants` masks take over `groups` at `maxBatchRows` (variants × prompts per forward).
int patchedForwards(const std::vector<PatchGroup>& groups, int64_t variants, int64_t maxBatchRows) {
  int n = 0;
  for (const auto& g : groups) {
    const int64_t step = std::max<int64_t>(1, maxBatchRows / g.inputs.clean.size(0));
    n += static_cast<int>((variants + step - 1) / step);
  }
  return n;
}

// The eap plugin's --check-top and --faithfulness are these functions on its listed edges and scores.
TEST(EdgePatching, ThePluginChecksItsTopEdgesExactly) {
  NEED_BENCH();
  installAnalysisPlugins();
  const AnalysisPlugin* plugin = findPlugin("eap");
  ASSERT_NE(plugin, nullptr);
  const CausalDataset& ds = b.ds;
  ParamValues v(plugin->descriptor);
  v.set("top_k", "6");
  v.set("check_top", "4");
  v.set("faithfulness", "true");
  v.check();
  PluginInputs in;
  in.model = &m;
  in.dataset = &ds;
  const AnalysisResult r = plugin->run(in, v, nullptr);
  const nlohmann::json& j = r.json;
  ASSERT_EQ(j["edges"].size(), 6u);
  std::vector<EdgeRef> edges;
  for (int i = 0; i < 4; ++i) edges.push_back(edgeByName(G, j["edges"][i]["upstream"], j["edges"][i]["downstream"], j["edges"][i]["receiver"]));
  const EdgePatchResult exact = patchEdges(m, toPatchGroups(ds), edges);
  for (int i = 0; i < 4; ++i) EXPECT_NEAR(j["edges"][i]["exact_effect"].get<double>(), exact.effect[i].item<double>(), 1e-9) << i;
  EXPECT_FALSE(j["edges"][4].contains("exact_effect"));
  EXPECT_EQ(j["exact_check"]["edges"], 4);
  const auto& f = j["faithfulness"];
  const std::vector<double> mib = mibFractions();  // MIB's sweep: ⌊f · E⌋ edges at x = f
  ASSERT_EQ(f["fraction"].get<std::vector<double>>(), mib);
  for (size_t i = 0; i < mib.size(); ++i)
    EXPECT_EQ(f["edges_kept"][i].get<int64_t>(), static_cast<int64_t>(mib[i] * static_cast<double>(G.edgeCount()))) << i;
  EXPECT_EQ(f["edges_kept"].back(), G.edgeCount());
  EXPECT_NEAR(f["faithfulness"].back().get<double>(), 1.0, 1e-4);
  EXPECT_DOUBLE_EQ(j["cpr"].get<double>(), f["cpr"].get<double>());
  // The checks reuse the attribution's recorded runs: only patched forwards (4 edges; 10 circuits, some of
  // equal size), and "forwards" counts every pass of the command.
  std::vector<int64_t> kept = f["edges_kept"].get<std::vector<int64_t>>();
  kept.erase(std::unique(kept.begin(), kept.end()), kept.end());
  const std::vector<PatchGroup> groups = toPatchGroups(ds);
  EXPECT_EQ(j["exact_check"]["forwards"].get<int>(), patchedForwards(groups, 4, 32));
  EXPECT_EQ(f["forwards"].get<int>(), patchedForwards(groups, static_cast<int64_t>(kept.size()), 32));
  EXPECT_EQ(j["forwards"].get<int>(), 2 * static_cast<int>(groups.size()) + patchedForwards(groups, 4, 32) + f["forwards"].get<int>());
  // --check-top beyond --top-k is refused before compute.
  ParamValues bad(plugin->descriptor);
  bad.set("top_k", "2");
  bad.set("check_top", "3");
  EXPECT_THROW(plugin->run(in, bad, nullptr), InputError);
}

// The exact checks reuse the runs edgeAttribution recorded (GroupRuns): they make only their patched forwards
// (without: 2 more per length group, the corrupted and clean prompts again), with numbers identical to a
// patching that records its own; a group edgeAttribution split into batches is recorded once, by the first.
TEST(EdgePatching, ReusedRunsSaveTwoForwardsPerGroupAndChangeNothing) {
  NEED_BENCH();
  const auto nGroups = static_cast<int>(b.groups.size());
  for (EapMethod method : {EapMethod::Eap, EapMethod::EapIg}) {
    SCOPED_TRACE(toString(method));
    EapParams p;
    p.method = method;
    p.steps = 3;
    GroupRuns runs;
    const EapResult eap = edgeAttribution(m, b.groups, p, nullptr, &runs);
    ASSERT_EQ(runs.corrupt.size(), b.groups.size());
    for (size_t g = 0; g < b.groups.size(); ++g) ASSERT_TRUE(runs.corrupt[g].input.defined() && runs.cleanMetric[g].defined()) << g;
    const at::Tensor order = edgesByScore(G, eap.scores);
    std::vector<EdgeRef> edges;
    for (int64_t i = 0; i < 5; ++i) edges.push_back({order[i].item<int64_t>() / G.nBackward(), order[i].item<int64_t>() % G.nBackward()});
    const EdgePatchResult fresh = patchEdges(m, b.groups, edges, 16), reused = patchEdges(m, b.groups, edges, 16, nullptr, &runs);
    EXPECT_EQ(fresh.forwards, patchedForwards(b.groups, 5, 16) + 2 * nGroups);
    EXPECT_EQ(reused.forwards, patchedForwards(b.groups, 5, 16));
    EXPECT_TRUE(at::equal(fresh.metricPatched, reused.metricPatched));
    EXPECT_EQ(fresh.metricClean, reused.metricClean);
    EXPECT_EQ(fresh.metricCorrupt, reused.metricCorrupt);
    const FaithfulnessCurve fc = faithfulnessAtFractions(m, b.groups, eap.scores, mibFractions(), 16);
    const FaithfulnessCurve rc = faithfulnessAtFractions(m, b.groups, eap.scores, mibFractions(), 16, nullptr, &runs);
    std::vector<int64_t> distinct = fc.edgesKept;
    distinct.erase(std::unique(distinct.begin(), distinct.end()), distinct.end());
    EXPECT_EQ(fc.forwards, patchedForwards(b.groups, static_cast<int64_t>(distinct.size()), 16) + 2 * nGroups);
    EXPECT_EQ(rc.forwards, patchedForwards(b.groups, static_cast<int64_t>(distinct.size()), 16));
    EXPECT_EQ(fc.metric, rc.metric);
    EXPECT_EQ(fc.cpr, rc.cpr);
    EXPECT_EQ(fc.cmd, rc.cmd);
  }
  // A group of three times the first group's prompts in batches of 2 (the test's groups hold ≤ 2): it was not
  // one batch, so the first patching records it, the next not; the other group was one batch.
  PatchGroup big = b.groups.front();
  for (at::Tensor* t : {&big.inputs.clean, &big.inputs.corrupt, &big.inputs.correct, &big.inputs.incorrect}) *t = t->dim() == 2 ? t->repeat({3, 1}) : t->repeat({3});
  big.promptIndex.clear();
  for (int64_t i = 0; i < big.inputs.clean.size(0); ++i) big.promptIndex.push_back(1000 + i);  // after every real prompt
  big.templateIds.assign(big.promptIndex.size(), -1);
  const std::vector<PatchGroup> groups{big, b.groups.back()};
  ASSERT_LE(groups[1].inputs.clean.size(0), 2);
  EapParams p;
  p.maxBatchRows = 2;
  GroupRuns runs;
  (void)edgeAttribution(m, groups, p, nullptr, &runs);
  EXPECT_FALSE(runs.corrupt[0].input.defined());
  EXPECT_TRUE(runs.corrupt[1].input.defined());
  const std::vector<EdgeRef> one{{0, G.logitsBackward()}};
  EXPECT_EQ(patchEdges(m, groups, one, 16, nullptr, &runs).forwards, patchedForwards(groups, 1, 16) + 2);
  EXPECT_EQ(patchEdges(m, groups, one, 16, nullptr, &runs).forwards, patchedForwards(groups, 1, 16));
}

// A bf16 model (the H200 benchmark's dtype): every edge patched is its corrupted run, within bf16 rounding
// (8 bits of mantissa: 2⁻⁸ relative per rounding, a few dozen roundings through 4 blocks; 5 % of max(1, |LD|)).
TEST(EdgePatching, Bf16ModelPatchesToo) {
  const fs::path dir = fs::path(MECHSCOPE_SOURCE_DIR) / "tests" / "data" / "trained" / "gpt2-ioi";
  if (!bench().ok) GTEST_SKIP() << dir << " or its EAP reference is absent";
  const auto m = HookedTransformer::load(dir, LoadOptions{"cpu", "bf16"});
  const EdgeGraph G = edgeGraphOf(m->config());
  const PatchInputs& in = bench().groups.front().inputs;
  const at::Tensor got = runPatchedVariants(*m, in, edgeMask(G).to(at::kFloat).unsqueeze(0));  // [1, batch]
  PatchInputs corrupt = in;
  corrupt.clean = in.corrupt;
  const at::Tensor want = handLd(*m, corrupt, nullptr);
  for (int64_t i = 0; i < want.size(0); ++i)
    EXPECT_NEAR(got[0][i].item<double>(), want[i].item<double>(), 0.05 * std::max(1.0, std::abs(want[i].item<double>()))) << i;
  EXPECT_NO_THROW(patchEdges(*m, bench().groups, {{0, G.headBackward(1, 0, EdgeInput::Q)}, {G.mlpForward(0), G.mlpBackward(2)}}));
}

// Graph.prune on hand-made circuits of the trained GPT-2's graph: an edge survives only on a path from the
// input to the logits.
TEST(EdgePatching, PruningKeepsOnlyPathsFromInputToLogits) {
  NEED_BENCH();
  (void)m;
  const int64_t F = G.nForward(), B = G.nBackward();
  auto circuit = [&](const std::vector<EdgeRef>& edges) {
    at::Tensor c = at::zeros({F, B}, at::kBool);
    for (const auto& e : edges) c[e.forward][e.backward] = true;
    return c;
  };
  const EdgeRef inToA0 = {0, G.headBackward(0, 0, EdgeInput::Q)}, a0ToLogits = {G.headForward(0, 0), G.logitsBackward()},
                a1ToM2 = {G.headForward(1, 1), G.mlpBackward(2)}, inToA2k = {0, G.headBackward(2, 3, EdgeInput::K)},
                a2ToM3 = {G.headForward(2, 3), G.mlpBackward(3)}, m3ToLogits = {G.mlpForward(3), G.logitsBackward()},
                inToLogits = {0, G.logitsBackward()};
  // A dead end (a0.h0 feeds nothing) and an orphan (a0.h0 is fed by nothing): both go.
  EXPECT_EQ(pruneCircuit(G, circuit({inToA0})).sum().item<int64_t>(), 0);
  EXPECT_EQ(pruneCircuit(G, circuit({a0ToLogits})).sum().item<int64_t>(), 0);
  // A path input → a0.h0 → logits stays; a1.h1 → m2 (a1.h1 unfed, m2 feeding nothing) goes.
  EXPECT_TRUE(at::equal(pruneCircuit(G, circuit({inToA0, a0ToLogits, a1ToM2})), circuit({inToA0, a0ToLogits})));
  // A head fed through its key input counts as fed: input → a2.h3 (k) → m3 → logits stays whole.
  const std::vector<EdgeRef> chain = {inToA2k, a2ToM3, m3ToLogits, inToLogits};
  EXPECT_TRUE(at::equal(pruneCircuit(G, circuit(chain)), circuit(chain)));
  // Cutting the chain's last edge removes it all but the direct input → logits edge.
  EXPECT_TRUE(at::equal(pruneCircuit(G, circuit({inToA2k, a2ToM3, inToLogits})), circuit({inToLogits})));
}

TEST(EdgePatching, BadEdgesAndScoresAreRefused) {
  NEED_BENCH();
  // a3.h0 cannot feed a1's query (it comes later).
  EXPECT_THROW(patchEdges(m, b.groups, {{G.headForward(3, 0), G.headBackward(1, 0, EdgeInput::Q)}}), InputError);
  EXPECT_THROW(patchEdges(m, b.groups, {{0, G.nBackward()}}), InputError);
  EXPECT_THROW(faithfulnessCurve(m, b.groups, at::zeros({3, 3}, at::kDouble), {0}), InputError);
}

}  // namespace
}  // namespace mechscope::analysis
