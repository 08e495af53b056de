// WAAD/FAI: head distance, WAAD, FAI (both horizons) equal an independent computation from
// materialised patterns; the planted model's local/global split is exactly planted.json's.
#include <gtest/gtest.h>

#include <ATen/ATen.h>

#include <set>

#include "analysis/waad_fai/waad_fai.hpp"
#include "core/common/errors.hpp"
#include "core/synth/planted_tasks.hpp"
#include "tests/analysis/test_attention_stats_support.hpp"

namespace mechscope::test {
namespace {

using Heads = std::vector<std::pair<int, int>>;

/// Reference from patterns: d, WAAD over `local`, FAI over `global` with band [a, b], rows t ≥ R.
struct Ref {
  at::Tensor d;  // [layer, head]
  std::vector<double> waad, fai;
};
Ref reference(const std::vector<at::Tensor>& pats, const Heads& local, const Heads& global, int64_t W, int64_t a, int64_t b, int64_t R) {
  const int64_t n = pats[0].size(1), H = pats[0].size(0), L = static_cast<int64_t>(pats.size());
  const at::Tensor t = at::arange(n, at::kDouble);
  const at::Tensor dist = (t.unsqueeze(1) - t.unsqueeze(0)).clamp_min(0);  // [query, key] i − j
  const at::Tensor rows = (t >= static_cast<double>(R)).to(at::kDouble).unsqueeze(1);  // [query, 1]
  const at::Tensor band = ((dist >= static_cast<double>(a)) & (dist <= static_cast<double>(b)) & (t.unsqueeze(1) >= t.unsqueeze(0))).to(at::kDouble) * rows;
  Ref r;
  r.d = at::zeros({L, H}, at::kDouble);
  for (int64_t l = 0; l < L; ++l)
    r.d[l] = (pats[static_cast<size_t>(l)] * dist).sum(2).narrow(1, R, n - R).mean(1);
  at::Tensor w = at::zeros({n}, at::kDouble), f = at::zeros({n}, at::kDouble);
  for (const auto& [l, h] : local) w += (pats[static_cast<size_t>(l)][h] * dist.clamp_max(static_cast<double>(W))).sum(1) * rows.squeeze(1);
  const at::Tensor cnt = band.sum(0);  // [key]
  for (const auto& [l, h] : global) f += at::where(cnt > 0, (pats[static_cast<size_t>(l)][h] * band).sum(0) / cnt.clamp_min(1), at::zeros_like(cnt));
  w /= static_cast<double>(local.size());
  f /= static_cast<double>(global.size());
  r.waad.assign(w.data_ptr<double>(), w.data_ptr<double>() + n);
  r.fai.assign(f.data_ptr<double>(), f.data_ptr<double>() + n);
  return r;
}

void expectClose(const std::vector<double>& a, const std::vector<double>& b, const std::string& what) {
  ASSERT_EQ(a.size(), b.size()) << what;
  double scale = 1e-12;
  for (double v : b) scale = std::max(scale, std::abs(v));
  for (size_t i = 0; i < a.size(); ++i) EXPECT_NEAR(a[i], b[i], 1e-5 * scale) << what << " at " << i;
}

TEST(WaadFai, EqualsMaterialisedPatternsOnFixtures) {
  for (const std::string fam : {"gpt2", "llama", "qwen3"}) {
    const auto dir = fixtureModel(fam);
    if (dir.empty()) GTEST_SKIP() << "fixtures absent";
    auto m = HookedTransformer::load(dir);
    const auto ids = randomIds(48, m->config().dVocab, 7);
    const auto pats = materialisedPatterns(*m, ids);
    for (auto [a, b, R] : {std::tuple<int64_t, int64_t, int64_t>{1, std::numeric_limits<int64_t>::max(), 0}, {2, 9, 10}}) {
      analysis::WaadFaiOptions o;
      o.faiMin = a;
      o.faiMax = b;
      o.responseStart = R;
      const auto res = analysis::runWaadFai(*m, {ids}, o);
      const Ref ref = reference(pats, res.localHeads, res.globalHeads, 10, a, std::min<int64_t>(b, 1 << 30), R);
      EXPECT_LT((res.headDistance - ref.d).abs().max().item<double>(), 1e-5 * ref.d.abs().max().item<double>()) << fam;
      expectClose(res.waad[0], ref.waad, fam + " waad");
      expectClose(res.fai[0], ref.fai, fam + " fai");
      EXPECT_EQ(res.fai[0].back(), 0.0);  // nothing after the last token
      // The split is the bottom/top 30 % of the reference distances.
      std::vector<std::pair<double, std::pair<int, int>>> d;
      for (int l = 0; l < ref.d.size(0); ++l)
        for (int h = 0; h < ref.d.size(1); ++h) d.push_back({ref.d[l][h].item<double>(), {l, h}});
      std::sort(d.begin(), d.end());
      const auto k = static_cast<size_t>(std::lround(0.3 * static_cast<double>(d.size())));
      std::set<std::pair<int, int>> lo, got(res.localHeads.begin(), res.localHeads.end());
      for (size_t i = 0; i < k; ++i) lo.insert(d[i].second);
      EXPECT_EQ(got, lo) << fam;
      // Preplan = top 40 % of |ΔWAAD| over rows ≥ R, anchors = top 40 % of FAI.
      EXPECT_EQ(res.anchor[0].size(), static_cast<size_t>(std::ceil(0.4 * static_cast<double>(48 - R) - 1e-9)));
      for (int64_t s : res.anchor[0]) EXPECT_GE(s, R);
    }
  }
}

TEST(WaadFai, PlantedLocalGlobalSplitIsExact) {
  const auto& f = attnPlanted();
  const auto res = analysis::runWaadFai(*f.model, {planted::toIds(planted::idleText())});
  Heads local, global;
  for (const auto& e : f.planted["expected"]["local_heads"]) local.push_back({e[0].get<int>(), e[1].get<int>()});
  for (const auto& e : f.planted["expected"]["global_heads"]) global.push_back({e[0].get<int>(), e[1].get<int>()});
  std::sort(local.begin(), local.end());
  std::sort(global.begin(), global.end());
  EXPECT_EQ(res.localHeads, local);
  EXPECT_EQ(res.globalHeads, global);
  const auto json = analysis::waadFaiToResult(res, {}).json;
  for (const char* key : {"head_distance", "local_heads", "global_heads", "waad", "fai", "preplan_tokens", "anchor_tokens"})
    EXPECT_TRUE(json.contains(key)) << key;
  EXPECT_EQ(json["waad"][0].size(), planted::toIds(planted::idleText()).size());
}

TEST(WaadFai, BadOptionsAreInputErrors) {
  const auto& f = attnPlanted();
  analysis::WaadFaiOptions o;
  o.responseStart = 10000;
  EXPECT_THROW(analysis::runWaadFai(*f.model, {planted::toIds(planted::idleText())}, o), InputError);
  o = {};
  o.window = 0;
  EXPECT_THROW(analysis::runWaadFai(*f.model, {planted::toIds(planted::idleText())}, o), InputError);
}

}  // namespace
}  // namespace mechscope::test
