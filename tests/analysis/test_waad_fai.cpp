// WAAD/FAI: head distance, WAAD, FAI (both horizons) equal an independent computation from
// materialised patterns and from the fixtures' Hugging Face reference attentions (per-row response
// starts); entropy and log-probability equal HF's logits; receiver-head kurtosis equals a plain at::
// computation on the reference attentions; the rhythm statistics equal hand and brute-force counts;
// the planted model's local/global split is exactly planted.json's and its numbers match its patterns.
#include <gtest/gtest.h>

#include <ATen/ATen.h>

#include <cmath>
#include <set>

#include "analysis/common/final_norm.hpp"
#include "analysis/waad_fai/rhythm_stats.hpp"
#include "analysis/waad_fai/waad_fai.hpp"
#include "core/common/errors.hpp"
#include "core/safetensors/safetensors_file.hpp"
#include "core/synth/planted_tasks.hpp"
#include "tests/analysis/test_attention_stats_support.hpp"

namespace mechscope::test {
namespace {

using Heads = std::vector<HeadRef>;

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
      std::vector<std::pair<double, HeadRef>> d;
      for (int l = 0; l < ref.d.size(0); ++l)
        for (int h = 0; h < ref.d.size(1); ++h) d.push_back({ref.d[l][h].item<double>(), {l, h}});
      std::sort(d.begin(), d.end());
      const auto k = static_cast<size_t>(std::lround(0.3 * static_cast<double>(d.size())));
      std::set<HeadRef> lo, got(res.localHeads.begin(), res.localHeads.end());
      for (size_t i = 0; i < k; ++i) lo.insert(d[i].second);
      EXPECT_EQ(got, lo) << fam;
      // Preplan = top 40 % of |ΔWAAD| over rows ≥ R, anchors = top 40 % of FAI.
      EXPECT_EQ(res.anchor[0].size(), static_cast<size_t>(std::ceil(0.4 * static_cast<double>(48 - R) - 1e-9)));
      for (int64_t s : res.anchor[0]) EXPECT_GE(s, R);
    }
  }
}

/// Excess kurtosis (biased, Fisher) of v [m] with plain at:: ops.
double kurtosis(const at::Tensor& v) {
  const at::Tensor c = v - v.mean();
  const double m2 = c.pow(2).mean().item<double>(), m4 = c.pow(4).mean().item<double>();
  return m4 / (m2 * m2) - 3.0;
}

/// Per-token entropy and realised log-probability from logits [pos, vocab] (index t: predicted by t − 1).
std::pair<std::vector<double>, std::vector<double>> predictions(const at::Tensor& logits, const std::vector<int64_t>& ids) {
  const at::Tensor lp = at::log_softmax(logits.to(at::kDouble), -1);  // [pos, vocab]
  std::vector<double> ent(ids.size(), std::nan("")), got(ids.size(), std::nan(""));
  for (size_t t = 1; t < ids.size(); ++t) {
    ent[t] = -(lp[static_cast<int64_t>(t) - 1].exp() * lp[static_cast<int64_t>(t) - 1]).sum().item<double>();
    got[t] = lp[static_cast<int64_t>(t) - 1][ids[t]].item<double>();
  }
  return {ent, got};
}

TEST(WaadFai, EqualsHfReferenceOnFixturesWithPerRowResponseStarts) {
  for (const std::string fam : {"gpt2", "llama", "qwen3"}) {
    const auto dir = fixtureModel(fam);
    if (dir.empty()) GTEST_SKIP() << "fixtures absent";
    auto m = HookedTransformer::load(dir);
    const auto ref = SafetensorsFile::open(dir / "reference.safetensors");
    const at::Tensor idt = ref.tensor("input_ids").contiguous();          // [2, 24]
    const at::Tensor att = ref.tensor("attentions").to(at::kDouble);      // [L, 2, head, 24, 24]
    const at::Tensor logits = ref.tensor("logits");                       // [2, 24, vocab]
    const int64_t L = att.size(0), H = att.size(2), n = idt.size(1);
    std::vector<std::vector<int64_t>> rows;
    for (int64_t r = 0; r < 2; ++r) rows.emplace_back(idt[r].data_ptr<int64_t>(), idt[r].data_ptr<int64_t>() + n);
    analysis::WaadFaiOptions o;
    o.responseStarts = {5, 9};
    o.receiverHeads = 3;
    const auto res = analysis::runWaadFai(*m, rows, o);
    ASSERT_EQ(res.responseStarts, (std::vector<int64_t>{5, 9}));
    at::Tensor d = at::zeros({L, H}, at::kDouble), kurt = at::zeros({L, H}, at::kDouble);
    double entAll = 0, entPeaks = 0, afterHits = 0;
    int64_t entCount = 0, peakCount = 0, afterEvents = 0;
    for (int64_t r = 0; r < 2; ++r) {
      const int64_t R = o.responseStarts[static_cast<size_t>(r)];
      std::vector<at::Tensor> pats;
      for (int64_t l = 0; l < L; ++l) pats.push_back(att[l][r]);  // [head, query, key]
      const Ref want = reference(pats, res.localHeads, res.globalHeads, 10, 1, 1 << 30, R);
      d += want.d / 2.0;
      expectClose(res.waad[static_cast<size_t>(r)], want.waad, fam + " waad");
      expectClose(res.fai[static_cast<size_t>(r)], want.fai, fam + " fai");
      for (int64_t t = 0; t < R; ++t) EXPECT_EQ(res.waad[static_cast<size_t>(r)][static_cast<size_t>(t)], 0.0) << "rows before R do not count";
      for (int64_t s : res.anchor[static_cast<size_t>(r)]) EXPECT_GE(s, R);
      // Receiver kurtosis: column mean over rows t ≥ max(R, s + 1), over response columns s ∈ [R, n − 2].
      for (int64_t l = 0; l < L; ++l)
        for (int64_t h = 0; h < H; ++h) {
          std::vector<double> col;
          for (int64_t s = R; s + 1 < n; ++s) col.push_back(att[l][r][h].select(1, s).narrow(0, s + 1, n - s - 1).mean().item<double>());
          kurt[l][h] += kurtosis(at::tensor(col, at::kDouble)) / 2.0;
        }
      // Entropy and log-probability from HF's logits.
      const auto [ent, lp] = predictions(logits[r], rows[static_cast<size_t>(r)]);
      EXPECT_TRUE(std::isnan(res.entropy[static_cast<size_t>(r)][0]));
      for (size_t t = 1; t < ent.size(); ++t) {
        EXPECT_NEAR(res.entropy[static_cast<size_t>(r)][t], ent[t], 1e-3) << fam << " t=" << t;
        EXPECT_NEAR(res.logProb[static_cast<size_t>(r)][t], lp[t], 5e-4) << fam << " t=" << t;
      }
      for (int64_t t = std::max<int64_t>(R, 1); t < n; ++t, ++entCount) entAll += ent[static_cast<size_t>(t)];
      for (int64_t t : res.waadPeaks[static_cast<size_t>(r)]) {
        entPeaks += ent[static_cast<size_t>(t)];
        ++peakCount;
        bool hit = false;  // an FAI peak within [t, t + 10]
        for (int64_t s : res.faiPeaks[static_cast<size_t>(r)]) hit = hit || (s >= t && s <= t + 10);
        afterHits += hit;
        ++afterEvents;
      }
    }
    EXPECT_LT((res.headDistance - d).abs().max().item<double>(), 1e-3 * d.abs().max().item<double>()) << fam;
    EXPECT_LT((res.receiverKurtosis - kurt).abs().max().item<double>(), 1e-3 * std::max(1.0, kurt.abs().max().item<double>())) << fam;
    // Receiver heads: the top 3 by the reference kurtosis (when the cut is not within the tolerance).
    std::vector<std::pair<double, HeadRef>> k;
    for (int l = 0; l < L; ++l)
      for (int h = 0; h < H; ++h) k.push_back({kurt[l][h].item<double>(), {l, h}});
    std::sort(k.begin(), k.end(), [](const auto& x, const auto& y) { return x.first > y.first; });
    if (k[2].first - k[3].first > 1e-2) {
      std::set<HeadRef> want{k[0].second, k[1].second, k[2].second};
      const std::set<HeadRef> got(res.receiverHeads.begin(), res.receiverHeads.end());
      EXPECT_EQ(got, want) << fam;
    }
    ASSERT_GT(entCount, 0);
    EXPECT_EQ(res.summary.entropyTokens, entCount);
    EXPECT_NEAR(res.summary.entropyMean, entAll / static_cast<double>(entCount), 1e-3) << fam;
    ASSERT_GT(peakCount, 0) << fam << ": the test must see WAAD peaks";
    EXPECT_NEAR(res.summary.entropyAtWaadPeaks, entPeaks / static_cast<double>(peakCount), 1e-3) << fam;
    EXPECT_EQ(res.summary.faiAfterWaad.events, afterEvents);
    EXPECT_EQ(res.summary.faiAfterWaad.hits, afterHits);
    const auto json = analysis::waadFaiToResult(res, o).json;
    EXPECT_TRUE(json["entropy"][0][0].is_null());
    EXPECT_EQ(json["response_start"], nlohmann::json({5, 9}));
    EXPECT_EQ(json["receiver_heads"].size(), 3u);
  }
}

TEST(WaadFai, RhythmStatsEqualHandAndBruteForceCounts) {
  // scipy.stats.kurtosis([1, 2, 3, 4, nan], fisher=True, bias=True, nan_policy="omit") = −1.36.
  EXPECT_NEAR(analysis::excessKurtosis(at::tensor({1.0, 2.0, 3.0, 4.0, std::nan("")})).item<double>(), -1.36, 1e-12);
  EXPECT_TRUE(std::isnan(analysis::excessKurtosis(at::tensor({2.0, 2.0, 2.0})).item<double>()));
  // Co-occurrence: receiver peaks {3, 7, 9}, global peaks {7, 9, 12} over N = 20 → 2 hits; expected 3·3/20.
  auto co = analysis::peakCoOccurrence({3, 7, 9}, {7, 9, 12}, 20);
  EXPECT_EQ(co.hits, 2.0);
  EXPECT_EQ(co.events, 3);
  EXPECT_NEAR(co.expected, 0.45, 1e-15);
  // At/after, by hand: positions 0..4, FAI peaks {1, 4}, WAAD peak 2 with lag 1 → window {2, 3}: miss;
  // chance that 2 of 5 positions hit a 2-wide window = 1 − C(3,2)/C(5,2) = 0.7.
  auto after = analysis::faiAfterWaad({2}, {1, 4}, 1, 0, 4);
  EXPECT_EQ(after.hits, 0.0);
  EXPECT_NEAR(after.expected, 0.7, 1e-12);
  // Brute force over every 3-subset of 10 positions for WAAD peaks {0, 6, 9}, lag 2.
  const std::vector<int64_t> waad{0, 6, 9};
  double total = 0;
  int subsets = 0;
  for (int a = 0; a < 10; ++a)
    for (int b = a + 1; b < 10; ++b)
      for (int c = b + 1; c < 10; ++c, ++subsets)
        total += analysis::faiAfterWaad(waad, {a, b, c}, 2, 0, 9).hits;
  EXPECT_NEAR(analysis::faiAfterWaad(waad, {1, 2, 3}, 2, 0, 9).expected, total / subsets, 1e-12);
  EXPECT_EQ(analysis::faiAfterWaad(waad, {1, 2, 3}, 2, 0, 9).hits, 1.0);  // 0 → 2; 6 → none in 6..8; 9 → none
}

TEST(WaadFai, PlantedSplitIsExactAndNumbersMatchItsPatterns) {
  const auto& f = attnPlanted();
  const auto ids = planted::toIds(planted::idleText());
  const int64_t n = static_cast<int64_t>(ids.size());
  // Two rows, each with its own response start; the second row is the first shifted by two tokens.
  const std::vector<int64_t> ids2(ids.begin() + 2, ids.end());
  analysis::WaadFaiOptions o;
  o.responseStarts = {4, 6};
  const auto res = analysis::runWaadFai(*f.model, {ids, ids2}, o);
  Heads local, global;
  for (const auto& e : f.planted["expected"]["local_heads"]) local.push_back({e[0].get<int>(), e[1].get<int>()});
  for (const auto& e : f.planted["expected"]["global_heads"]) global.push_back({e[0].get<int>(), e[1].get<int>()});
  std::sort(local.begin(), local.end());
  std::sort(global.begin(), global.end());
  EXPECT_EQ(res.localHeads, local);
  EXPECT_EQ(res.globalHeads, global);
  // Numbers against the materialised patterns (explicit forward, plain at:: sums in reference()).
  at::Tensor d = at::zeros_like(res.headDistance);
  const std::vector<std::vector<int64_t>> rows{ids, ids2};
  for (size_t r = 0; r < 2; ++r) {
    const auto pats = materialisedPatterns(*f.model, rows[r]);
    const Ref want = reference(pats, local, global, 10, 1, 1 << 30, o.responseStarts[r]);
    d += want.d / 2.0;
    expectClose(res.waad[r], want.waad, "planted waad row " + std::to_string(r));
    expectClose(res.fai[r], want.fai, "planted fai row " + std::to_string(r));
    // Entropy / log-probability against the full-logit forward.
    ForwardOptions fo;
    const auto full = f.model->forward(at::tensor(at::ArrayRef<int64_t>(rows[r]), at::kLong).unsqueeze(0), fo);
    const auto [ent, lp] = predictions(full.logits[0], rows[r]);
    for (size_t t = 1; t < ent.size(); ++t) {
      EXPECT_NEAR(res.entropy[r][t], ent[t], 1e-6 * std::max(1.0, std::abs(ent[t])));
      EXPECT_NEAR(res.logProb[r][t], lp[t], 1e-6 * std::max(1.0, std::abs(lp[t])));
    }
  }
  EXPECT_LT((res.headDistance - d).abs().max().item<double>(), 1e-5 * d.abs().max().item<double>());
  const auto json = analysis::waadFaiToResult(res, o).json;
  EXPECT_EQ(json["waad"][0].size(), static_cast<size_t>(n));
  EXPECT_EQ(json["waad"][1].size(), static_cast<size_t>(n - 2));
  EXPECT_NEAR(json["fai"][0][10].get<double>(), res.fai[0][10], 0.0);
  EXPECT_EQ(json["response_start"], nlohmann::json({4, 6}));
}

TEST(WaadFai, BadOptionsAreInputErrors) {
  const auto& f = attnPlanted();
  analysis::WaadFaiOptions o;
  o.responseStart = 10000;
  EXPECT_THROW(analysis::runWaadFai(*f.model, {planted::toIds(planted::idleText())}, o), InputError);
  o = {};
  o.window = 0;
  EXPECT_THROW(analysis::runWaadFai(*f.model, {planted::toIds(planted::idleText())}, o), InputError);
  o = {};
  o.responseStarts = {1, 2};  // two starts for one row
  EXPECT_THROW(analysis::runWaadFai(*f.model, {planted::toIds(planted::idleText())}, o), InputError);
  o = {};
  o.receiverHeads = -1;
  EXPECT_THROW(analysis::runWaadFai(*f.model, {planted::toIds(planted::idleText())}, o), InputError);
}

// A bf16 model's token predictions sum over the vocabulary in fp32: against fp64 sums of the same bf16 logits. fp32
// softmax gives each p_v a relative error ε ≤ (V + 3 + max|z − z_max|)·u (the shifted exponent, exp, and a V-term sum),
// so |ΔH| ≤ ε(H + 1) + V·u·H (the entropy's own V-term sum) and |Δ log p(next)| ≤ ε + u; checked with 2× margin.
TEST(WaadFai, Bf16ModelsTokenPredictionsEqualFp64SumsOfTheirLogits) {
  const auto dir = fixtureModel("qwen3");
  if (dir.empty()) GTEST_SKIP() << "fixtures absent";
  LoadOptions lo;
  lo.dtype = "bf16";
  auto m = HookedTransformer::load(dir, lo);
  const int64_t n = 40, V = m->config().dVocab;
  const auto ids = randomIds(n, V, 5);
  const at::Tensor normed = at::randn({n, static_cast<int64_t>(m->config().dModel)}, at::TensorOptions().dtype(at::kFloat)).mul_(3.0).to(at::kBFloat16);
  const auto got = analysis::tokenPredictions(*m, normed, ids, 16);
  const at::Tensor z = analysis::applyUnembed(*m, normed).to(at::kDouble);  // [pos, vocab]: the bf16 logits, exact in fp64
  const auto [ent, lp] = predictions(z, ids);
  const double u = std::ldexp(1.0, -24);
  for (int64_t t = 1; t < n; ++t) {
    const at::Tensor zr = z[t - 1];
    const double spread = (zr.max() - zr.min()).item<double>();
    const double eps = (static_cast<double>(V) + 3.0 + spread) * u;
    const auto i = static_cast<size_t>(t);
    EXPECT_NEAR(got.entropy[i], ent[i], 2.0 * (eps * (ent[i] + 1.0) + static_cast<double>(V) * u * ent[i])) << "t=" << t;
    EXPECT_NEAR(got.logProb[i], lp[i], 2.0 * (eps + u)) << "t=" << t;
  }
  EXPECT_TRUE(std::isnan(got.entropy[0]) && std::isnan(got.logProb[0]));
}

}  // namespace
}  // namespace mechscope::test
