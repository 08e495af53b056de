// Mixture-of-experts experts as components of ablation and activation patching (issue #23): ablating
// expert e of layer l removes exactly its routing-weighted output, computed here by hand from the weights;
// patching expert_out cells equals a forward whose expert slice is replaced by hand; dense layers of a
// partly sparse model are left unpatched.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <filesystem>

#include <fmt/format.h>

#include "analysis/ablation/ablation.hpp"
#include "analysis/common/logit_diff.hpp"
#include "analysis/patching/activation_patching.hpp"
#include "core/common/errors.hpp"
#include "core/model/hooked_transformer.hpp"
#include "core/safetensors/safetensors_file.hpp"

using namespace mechscope;

namespace {

std::filesystem::path moeFixture(const std::string& name) {
  return std::filesystem::path(MECHSCOPE_SOURCE_DIR) / "tests" / "data" / "families" / name;
}

at::Tensor moeFixtureIds(const std::string& name) {
  return SafetensorsFile::open(moeFixture(name) / "reference.safetensors").tensor("input_ids");  // [2, 24]
}

double maxAbsDelta(const at::Tensor& a, const at::Tensor& b) {
  EXPECT_EQ(a.sizes(), b.sizes());
  return (a.to(at::kCPU, at::kDouble) - b.to(at::kCPU, at::kDouble)).abs().max().item<double>();
}

/// Expert `e` of a SwiGLU mixture (Mixtral, Qwen-MoE) on x [n, d_model], fp64, from the weights alone.
at::Tensor swigluExpertByHand(const ExpertWeights& w, const at::Tensor& x) {
  const at::Tensor gate = at::matmul(x, w.wGate.to(at::kDouble).t()), up = at::matmul(x, w.wIn.to(at::kDouble).t());
  return at::matmul(gate * at::sigmoid(gate) * up, w.wOut.to(at::kDouble).t());
}

class ExpertAblation : public ::testing::TestWithParam<std::string> {};

TEST_P(ExpertAblation, ZeroRemovesExactlyTheExpertsWeightedOutput) {
  auto m = HookedTransformer::load(moeFixture(GetParam()));
  const ModelConfig& c = m->config();
  const at::Tensor ids = moeFixtureIds(GetParam());
  int l = -1;
  for (int i = 0; i < c.nLayers; ++i)
    if (c.isMoeLayer(i)) l = i;
  ASSERT_GE(l, 0);
  const std::string ln2 = fmt::format("blocks.{}.ln2.hook_normalized", l), mlpOut = fmt::format("blocks.{}.hook_mlp_out", l);
  const std::string wName = fmt::format("blocks.{}.mlp.hook_expert_weights", l), iName = fmt::format("blocks.{}.mlp.hook_expert_indices", l);
  const auto clean = m->runWithCache(ids, {ln2, mlpOut, wName, iName}, {}, at::Device(at::kCPU));
  const at::Tensor idx = clean.get(iName).reshape({48, c.moe.topK});
  const int64_t e = at::bincount(idx.reshape({-1}), {}, c.moe.nExperts).argmax().item<int64_t>();
  const at::Tensor w = (clean.get(wName).reshape({48, c.moe.topK}).to(at::kDouble) * (idx == e).to(at::kDouble)).sum(1, true);
  const at::Tensor byHand = w * swigluExpertByHand(m->weights().layers[static_cast<size_t>(l)].moe.experts[static_cast<size_t>(e)],
                                                   clean.get(ln2).reshape({48, c.dModel}).to(at::kDouble));  // [token, d_model]

  analysis::AblationParams p;
  p.method = analysis::AblationMethod::Zero;
  p.experts = {HeadRef{l, static_cast<int>(e)}};
  const HookSet hooks = analysis::ablationHooks(*m, ids, p);
  const auto ablated = m->runWithCache(ids, {mlpOut}, {}, at::Device(at::kCPU), nullptr, &hooks);
  const double err = maxAbsDelta(ablated.get(mlpOut).reshape({48, c.dModel}), clean.get(mlpOut).reshape({48, c.dModel}).to(at::kDouble) - byHand);
  std::printf("[expert-ablation] %-9s expert %d.%lld: mlp_out vs clean − w·expert(x) by hand max|err| %.3g (contribution max %.3g)\n",
              GetParam().c_str(), l, static_cast<long long>(e), err, byHand.abs().max().item<double>());
  EXPECT_LE(err, 1e-4);
  EXPECT_GT(byHand.abs().max().item<double>(), 1e-2);

  // The ablate() metric equals a forward whose expert slice is zeroed by hand; only --positions change.
  const at::Tensor correct = ids.select(1, 5), incorrect = ids.select(1, 6);
  HookSet manual;
  manual.add(fmt::format("blocks.{}.mlp.hook_expert_out", l), [e](const at::Tensor& t, const HookContext&) -> std::optional<at::Tensor> {
    at::Tensor out = t.clone();
    out.select(2, e).zero_();
    return out;
  });
  const analysis::AblationResult r = analysis::ablate(*m, ids, correct, incorrect, p);
  EXPECT_EQ(r.ablatedExperts, 1);
  EXPECT_EQ(r.ablatedHeads, 0);
  EXPECT_NEAR(r.metricAfter, analysis::ablationMetric(analysis::ablationLogitDiff(*m, ids, correct, incorrect, &manual)), 1e-5);
  EXPECT_GT(std::abs(r.metricAfter - r.metricBefore), 1e-4);
  p.positions = {-1};
  const HookSet last = analysis::ablationHooks(*m, ids, p);
  const at::Tensor lastOnly = m->runWithCache(ids, {mlpOut}, {}, at::Device(at::kCPU), nullptr, &last).get(mlpOut);
  EXPECT_EQ(maxAbsDelta(lastOnly.narrow(1, 0, 23), clean.get(mlpOut).narrow(1, 0, 23)), 0.0);
}

INSTANTIATE_TEST_SUITE_P(Families, ExpertAblation, ::testing::Values("mixtral", "qwen2_moe", "qwen3_moe"),
                         [](const auto& info) { return info.param; });

TEST(ExpertAblationChecks, MeanUsesTheReferenceAndBadExpertsAreRefused) {
  auto m = HookedTransformer::load(moeFixture("qwen2_moe"));
  const at::Tensor ids = moeFixtureIds("qwen2_moe");
  analysis::AblationParams p;
  p.method = analysis::AblationMethod::Mean;
  p.reference = ids;  // the mean over these two prompts
  p.experts = {HeadRef{0, 1}};
  const HookSet hooks = analysis::ablationHooks(*m, ids, p);
  at::Tensor seen;  // what flows on after the ablation hook
  HookSet both = hooks;
  both.add("blocks.0.mlp.hook_expert_out", [&](const at::Tensor& t, const HookContext&) -> std::optional<at::Tensor> {
    seen = t.clone();
    return std::nullopt;
  });
  const auto clean = m->runWithCache(ids, {"blocks.0.mlp.hook_expert_out"}, {}, at::Device(at::kCPU));
  (void)m->forward(ids, {}, &both);
  const at::Tensor cleanOut = clean.get("blocks.0.mlp.hook_expert_out");  // [batch, pos, expert, d_model]
  EXPECT_LE(maxAbsDelta(seen.select(2, 1), cleanOut.select(2, 1).mean(0, true).expand({2, 24, m->config().dModel})), 1e-6);
  EXPECT_EQ(maxAbsDelta(seen.select(2, 0), cleanOut.select(2, 0)), 0.0);

  auto refused = [&](analysis::AblationParams q) { return analysis::ablationHooks(*m, ids, q); };
  analysis::AblationParams bad;
  bad.experts = {HeadRef{1, 0}};  // layer 1 is dense (mlp_only_layers)
  EXPECT_THROW(refused(bad), InputError);
  bad.experts = {HeadRef{0, 4}};  // 4 experts: 0..3
  EXPECT_THROW(refused(bad), InputError);
  bad.experts = {HeadRef{0, 0}};
  bad.method = analysis::AblationMethod::Uniform;
  EXPECT_THROW(refused(bad), UnsupportedError);
}

TEST(ExpertPatching, CellsEqualHandPatchedForwardsAndDenseLayersStayCorrupted) {
  auto m = HookedTransformer::load(moeFixture("qwen2_moe"));  // layers 0, 2 sparse; 1 dense
  const at::Tensor ids = moeFixtureIds("qwen2_moe");
  analysis::PatchInputs in;
  in.clean = ids.narrow(0, 0, 1).repeat({2, 1});
  in.corrupt = ids.narrow(0, 1, 1).repeat({2, 1});
  in.corrupt[1] = ids[0].flip(0);
  in.correct = at::tensor({11, 12}, at::kLong);
  in.incorrect = at::tensor({13, 14}, at::kLong);
  analysis::PatchParams p;
  p.component = analysis::PatchComponent::ExpertOut;
  p.normalisation = analysis::Normalisation::Raw;
  const analysis::PatchResult batched = analysis::activationPatch(*m, in, p);
  const analysis::PatchResult loop = analysis::activationPatchLoop(*m, in, p);
  ASSERT_EQ(batched.metricPatched.sizes(), (std::vector<int64_t>{3, 4, 2}));  // [layer, expert, batch]
  EXPECT_LE(maxAbsDelta(batched.metricPatched, loop.metricPatched), 1e-4);
  for (int64_t e = 0; e < 4; ++e)
    EXPECT_LE(maxAbsDelta(batched.metricPatched[1][e], batched.metricCorruptPerPrompt), 1e-5) << "dense layer 1";
  // Cell (2, e) by hand: the corrupted run with expert e's slice taken from the clean run.
  const auto clean = m->runWithCache(in.clean, {"blocks.2.mlp.hook_expert_out"}, {}, at::Device(at::kCPU));
  double moved = 0;
  for (int64_t e = 0; e < 4; ++e) {
    HookSet hs;
    const at::Tensor src = clean.get("blocks.2.mlp.hook_expert_out").select(2, e);
    hs.add("blocks.2.mlp.hook_expert_out", [&](const at::Tensor& t, const HookContext&) -> std::optional<at::Tensor> {
      at::Tensor out = t.clone();
      out.select(2, e).copy_(src);
      return out;
    });
    ForwardOptions last;
    last.logitsLastOnly = true;
    const at::Tensor ld = analysis::logitDiff(m->forward(in.corrupt, last, &hs).logits, in.correct, in.incorrect);
    EXPECT_LE(maxAbsDelta(batched.metricPatched[2][e], ld), 1e-4) << "expert " << e;
    moved = std::max(moved, maxAbsDelta(ld, batched.metricCorruptPerPrompt));
  }
  EXPECT_GT(moved, 1e-3);  // some expert matters
  const analysis::PatchResult attr = analysis::attributionPatch(*m, in, p);
  EXPECT_EQ(attr.metricPatched.sizes(), batched.metricPatched.sizes());
  // A dense model has no experts to patch.
  auto dense = HookedTransformer::load(moeFixture("phi3"));
  EXPECT_THROW((void)analysis::activationPatch(*dense, in, p), InputError);
}

}  // namespace
