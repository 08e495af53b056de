// OV / QK circuits (issue #22) against the independent reference port (scripts/reference/ov_qk_ref.py: its
// own reading of the safetensors in the Hugging Face layouts, fp64, the T×T eigenvalues unfactored, GQA by
// repeat_interleave) on gpt2-ioi and llama2-niah (4 query heads on 2 K/V heads); a tiny model computed by
// hand; the QK look-up's diagonal against the forward pass's layer-0 scores of a one-token prompt on every
// fixture family (GPT-2, Llama, Mistral, GPT-NeoX, Qwen2, Qwen3 with qk-norm); and bad input.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>

#include "analysis/ov_qk/ov_qk.hpp"
#include "core/common/errors.hpp"
#include "core/model/hooked_transformer.hpp"
#include "tests/common/param_names.hpp"
#include "tests/common/rounding_bounds.hpp"

namespace mechscope::analysis {
namespace {

std::filesystem::path ovQkTrainedDir() { return std::filesystem::path(MECHSCOPE_SOURCE_DIR) / "tests" / "data" / "trained"; }

constexpr double kFp64UnitRoundoff = 1.1102230246251565e-16;  // 2⁻⁵³

class OvQkReference : public ::testing::TestWithParam<std::string> {};

TEST_P(OvQkReference, EveryHeadEqualsThePythonPort) {
  const auto dir = ovQkTrainedDir() / GetParam();
  std::ifstream in(ovQkTrainedDir() / "references" / ("ov_qk_" + GetParam() + ".json"));
  if (!std::filesystem::exists(dir / "model.safetensors") || !in) GTEST_SKIP() << dir << " or its reference is absent";
  const nlohmann::json ref = nlohmann::json::parse(in);
  const auto model = HookedTransformer::load(dir);
  const ModelConfig& c = model->config();
  OvQkParams p;
  p.tokens = ref["tokens"].get<std::vector<int64_t>>();
  p.topK = ref["top_k"].get<int64_t>();
  p.queryTokens = ref["query_tokens"].get<std::vector<int64_t>>();
  p.keyTokens = ref["key_tokens"].get<std::vector<int64_t>>();
  const OvQkResult r = ovQkCircuits(*model, p);
  const auto T = static_cast<int64_t>(p.tokens.size());
  const double D = c.dModel, dh = c.dHead;
  // Top-k. Both sides hold the same weights (bf16 upcast exactly). The C++ rows o [T, d_model] are fp64 and
  // rounded once to fp32, then dotted with W_U in fp32: an entry is within γ_{d_model+1}·Σ_i |o_i||W_U[j,i]|
  // ≤ γ_{d_model+1}·row_scale of the exact value (Higham Thm 3.5); the port is fp64 (errors ~1e-16
  // relative). A membership decides own ≥ k-th other, a difference of two entries: it is compared where the
  // port's margin exceeds 2·γ_{d_model+2}·row_scale (one more u for the port).
  const double topGamma = 2.0 * test::gamma(D + 2.0);
  // Eigen score: both fp64. The matrices entering the eigensolvers are within γ_N(fp64)·|A||B| entrywise,
  // N = 2·d_model + d_head + |T| (embedding·W_V, the output·W_U, the product of the factors); by Bauer–Fike
  // each eigenvalue moves by ≤ κ·‖δM‖₂ ≤ κ·γ_N·‖|A||B|‖_F (κ: the eigenvector matrix's condition number, the
  // larger of T×T and d_head×d_head, from the port), so Σ|λ| by ≤ |T| times that and Σλ (the trace) by no
  // more: the score by ≤ 2·(1 + |score|)·|T|·κ·γ_N·‖|A||B|‖_F / Σ|λ|, for each side: twice that.
  const double eigGamma = test::gamma(2 * D + dh + static_cast<double>(T), kFp64UnitRoundoff);
  // QK: both fp64 along the chain norm (mean, variance: 2·d_model), projection (d_model), dot (d_head):
  // within γ_N(fp64)·S each, S = the port's Σ|terms| scale; twice that between the two.
  const double qkGamma = 2.0 * test::gamma(3 * D + dh + 16.0, kFp64UnitRoundoff);
  int64_t comparedHits = 0, allHits = 0;
  double maxEig = 0, maxQk = 0, maxEigBound = 0, maxQkBound = 0, minMarginOverBound = 1e300, maxVocab = 0, maxVocabBound = 0;
  for (int l = 0; l < c.nLayers; ++l)
    for (int h = 0; h < c.nHeads; ++h) {
      SCOPED_TRACE(GetParam() + " head " + std::to_string(l) + "." + std::to_string(h));
      const double score = ref["ov_copy_eigen"][l][h].get<double>();
      const double eigBound = 2.0 * 2.0 * (1.0 + std::abs(score)) * static_cast<double>(T) * ref["eig_cond"][l][h].get<double>() * eigGamma *
                              ref["eig_abs_norm"][l][h].get<double>() / ref["eig_sum_abs"][l][h].get<double>();
      EXPECT_LT(eigBound, 1e-6);  // the comparison is not vacuous
      EXPECT_NEAR(r.copyEigen[l][h].item<double>(), score, eigBound);
      maxEigBound = std::max(maxEigBound, eigBound);
      // The whole vocabulary: the same argument on the d_head × d_head matrices, whose sums now run over the
      // vocabulary too (N = vocab + 2·d_model + d_head) and whose d_head eigenvalues carry the error.
      const double vocabScore = ref["ov_copy_eigen_vocab"][l][h].get<double>();
      const double vocabBound = 2.0 * 2.0 * (1.0 + std::abs(vocabScore)) * dh * ref["eig_vocab_cond"][l][h].get<double>() *
                                test::gamma(c.dVocab + 2 * D + dh, kFp64UnitRoundoff) * ref["eig_vocab_abs_norm"][l][h].get<double>() /
                                ref["eig_vocab_sum_abs"][l][h].get<double>();
      EXPECT_LT(vocabBound, 1e-4);
      EXPECT_NEAR(r.copyEigenVocab[l][h].item<double>(), vocabScore, vocabBound);
      maxVocab = std::max(maxVocab, std::abs(r.copyEigenVocab[l][h].item<double>() - vocabScore));
      maxVocabBound = std::max(maxVocabBound, vocabBound);
      maxEig = std::max(maxEig, std::abs(r.copyEigen[l][h].item<double>() - score));
      int64_t unclear = 0, unclearNeg = 0;
      for (int64_t i = 0; i < T; ++i) {
        const double bound = topGamma * ref["ov_row_scale"][l][h][i].get<double>();
        for (const bool neg : {false, true}) {
          const double margin = ref[neg ? "ov_margin_negative" : "ov_margin"][l][h][i].get<double>();
          const int64_t refRank = ref[neg ? "ov_rank_negative" : "ov_rank"][l][h][i].get<int64_t>();
          const int64_t mine = (neg ? r.rankNegative : r.rank)[l][h][i].item<int64_t>();
          ++allHits;
          minMarginOverBound = std::min(minMarginOverBound, std::abs(margin) / bound);
          if (std::abs(margin) <= bound) {
            ++(neg ? unclearNeg : unclear);
            continue;
          }
          EXPECT_EQ(mine <= p.topK, refRank <= p.topK) << "token " << p.tokens[static_cast<size_t>(i)] << (neg ? " negated" : "");
          ++comparedHits;
        }
      }
      EXPECT_LE(std::abs(r.copyTopK[l][h].item<double>() - ref["ov_copy_topk"][l][h].get<double>()), static_cast<double>(unclear) / T + 1e-12);
      EXPECT_LE(std::abs(r.copyTopKNegative[l][h].item<double>() - ref["ov_copy_topk_negative"][l][h].get<double>()),
                static_cast<double>(unclearNeg) / T + 1e-12);
      for (const std::string key : {"qk", "qk_position"}) {
        if (!ref.contains(key)) continue;
        OvQkResult rp;
        if (key == "qk_position") {
          OvQkParams pp = p;
          pp.position = ref["position"].get<int64_t>();
          pp.heads = {HeadRef{l, h}};
          rp = ovQkCircuits(*model, pp);
        }
        const at::Tensor qk = (key == "qk" ? r.qk : rp.qk)[l][h];  // [query, key]
        const double bound = qkGamma * ref[key + "_abs_scale"][l][h].get<double>();
        maxQkBound = std::max(maxQkBound, bound);
        for (size_t a = 0; a < p.queryTokens.size(); ++a)
          for (size_t b = 0; b < p.keyTokens.size(); ++b) {
            const double want = ref[key][l][h][a][b].get<double>();
            EXPECT_NEAR(qk[static_cast<int64_t>(a)][static_cast<int64_t>(b)].item<double>(), want, bound) << key << " " << a << "," << b;
            maxQk = std::max(maxQk, std::abs(qk[static_cast<int64_t>(a)][static_cast<int64_t>(b)].item<double>() - want));
          }
      }
    }
  EXPECT_GT(comparedHits, allHits * 9 / 10);
  std::cout << GetParam() << ": eigen max |diff| " << maxEig << " (bound ≤ " << maxEigBound << "), vocabulary eigen max |diff| " << maxVocab
            << " (bound ≤ " << maxVocabBound << "), qk max |diff| " << maxQk
            << " (bound ≤ " << maxQkBound << "), top-k memberships compared " << comparedHits << " of " << allHits
            << " (smallest |margin| / bound " << minMarginOverBound << ")\n";
}

INSTANTIATE_TEST_SUITE_P(Trained, OvQkReference, ::testing::Values("gpt2-ioi", "llama2-niah"), test::identifierName);

/// One layer, d_model 2, two query heads on one K/V head (d_head 2), vocab 3, RMSNorm: every number by hand.
std::unique_ptr<HookedTransformer> tinyLlama() {
  const nlohmann::json cfgJson = {{"model_type", "llama"}, {"num_hidden_layers", 1}, {"hidden_size", 2}, {"num_attention_heads", 2},
                                  {"num_key_value_heads", 1}, {"head_dim", 2}, {"intermediate_size", 4}, {"vocab_size", 3},
                                  {"max_position_embeddings", 16}, {"rms_norm_eps", 1e-6}, {"hidden_act", "silu"}};
  const ModelConfig cfg = ModelConfig::fromJson(cfgJson, "tinyLlama");
  auto t = [](std::vector<double> v, std::vector<int64_t> shape) { return at::tensor(v, at::kFloat).view(shape); };
  ModelWeights w;
  w.wE = t({1, 0, 0, 1, 1, 1}, {3, 2});
  LayerWeights L;
  L.ln1W = t({2, 1}, {2});
  L.wQ = t({1, 0, 0, 1, 2, 0, 0, 2}, {4, 2});  // head 0: I, head 1: 2·I
  L.wK = t({1, 0, 0, 1}, {2, 2});
  L.wV = t({2, 1, 0, -1}, {2, 2});
  L.wO = t({1, 0, -1, 0, 0, 1, 0, -1}, {2, 4});  // head 0: I, head 1: −I
  L.ln2W = at::ones({2});
  L.wIn = at::zeros({4, 2});
  L.wGate = at::zeros({4, 2});
  L.wOut = at::zeros({2, 4});
  w.layers.push_back(L);
  w.lnFinalW = t({1, 3}, {2});
  w.wU = t({1, 0, 0, 1, -1, -1}, {3, 2});  // its mean over the vocabulary is 0: centring changes nothing
  return std::make_unique<HookedTransformer>(cfg, w, at::Device(at::kCPU), at::kFloat);
}

TEST(OvQk, TinyModelByHand) {
  const auto model = tinyLlama();
  // Folded rows o_t = (E_t ⊙ ln1) W_V^T W_O^T ⊙ ln_f: o_0 = (4, 0), o_1 = (1, −3), o_2 = (5, −3) for head 0;
  // head 1 the negatives. Entries o_t·W_U[j]: row 0 = (4, 0, −4), row 1 = (1, −3, 2), row 2 = (5, −3, −2).
  OvQkParams p;
  p.tokens = {0, 1};  // |T| = d_head: the T×T matrix [[4, 0], [1, −3]] itself, eigenvalues 4 and −3
  p.topK = 1;
  p.queryTokens = {0, 1};
  p.keyTokens = {0, 1};
  OvQkResult r = ovQkCircuits(*model, p);
  EXPECT_NEAR(r.copyEigen[0][0].item<double>(), 1.0 / 7.0, 1e-12);
  EXPECT_NEAR(r.copyEigen[0][1].item<double>(), -1.0 / 7.0, 1e-12);
  // Ranks in their own rows: token 0 is first of (4, 0, −4), token 1 third of (1, −3, 2); negated: 3 and 1.
  EXPECT_TRUE(at::equal(r.rank[0][0], at::tensor({1, 3}, at::kLong)));
  EXPECT_TRUE(at::equal(r.rankNegative[0][0], at::tensor({3, 1}, at::kLong)));
  EXPECT_TRUE(at::equal(r.rank[0][1], at::tensor({3, 1}, at::kLong)));
  EXPECT_DOUBLE_EQ(r.copyTopK[0][0].item<double>(), 0.5);
  EXPECT_DOUBLE_EQ(r.copyTopKNegative[0][1].item<double>(), 0.5);
  // QK: x̂ = x/√(mean x² + ε) ⊙ (2, 1); x̂_0 = (2, 0)/ρ, x̂_1 = (0, 1)/ρ, ρ = √(0.5 + 1e-6); both heads read
  // the one K/V head (k = x̂), head 1's queries are doubled: q·k/√2.
  const double rho2 = 0.5 + 1e-6;
  const double want00 = 4.0 / rho2 / std::sqrt(2.0), want11 = 1.0 / rho2 / std::sqrt(2.0);
  EXPECT_NEAR(r.qk[0][0][0][0].item<double>(), want00, 1e-12);
  EXPECT_NEAR(r.qk[0][0][0][1].item<double>(), 0.0, 1e-12);
  EXPECT_NEAR(r.qk[0][0][1][1].item<double>(), want11, 1e-12);
  EXPECT_NEAR(r.qk[0][1][0][0].item<double>(), 2.0 * want00, 1e-12);
  // |T| = 3 > d_head: the factored path. The T×T matrix [[4, 0, −4], [1, −3, 2], [5, −3, −2]] has rank 2,
  // trace −1 and principal 2×2 minors summing to 12: λ² + λ + 12 = 0, a complex pair of modulus √12.
  p.tokens = {0, 1, 2};
  r = ovQkCircuits(*model, p);
  EXPECT_NEAR(r.copyEigen[0][0].item<double>(), -1.0 / (2.0 * std::sqrt(12.0)), 1e-12);
  EXPECT_TRUE(at::equal(r.rank[0][0], at::tensor({1, 3, 2}, at::kLong)));  // row 2 = (5, −3, −2): token 2 is second
  EXPECT_NEAR(r.copyTopK[0][0].item<double>(), 1.0 / 3.0, 1e-15);
  // T is the whole vocabulary here: the full-vocabulary score (through W_Uᵀ·W_E) is the same number.
  EXPECT_NEAR(r.copyEigenVocab[0][0].item<double>(), -1.0 / (2.0 * std::sqrt(12.0)), 1e-12);
  EXPECT_NEAR(r.copyEigenVocab[0][1].item<double>(), 1.0 / (2.0 * std::sqrt(12.0)), 1e-12);
}

TEST(OvQk, TokenSetIsDistinctInFirstOccurrenceOrderOrTheMostFrequent) {
  const std::vector<std::vector<int64_t>> rows = {{5, 7, 5, 9, 7, 5}, {9, 2}};
  EXPECT_EQ(ovTokenSet(rows), (std::vector<int64_t>{5, 7, 9, 2}));
  EXPECT_EQ(ovTokenSet(rows, 2), (std::vector<int64_t>{5, 7}));     // 5 ×3, then 7 and 9 ×2: 7 came first
  EXPECT_EQ(ovTokenSet(rows, 3), (std::vector<int64_t>{5, 7, 9}));
}

TEST(OvQk, BadInputIsAnInputErrorBeforeAnyCompute) {
  const auto model = tinyLlama();
  int steps = 0;
  RunContext ctx;
  ctx.progress = [&](const Progress&) { ++steps; };
  OvQkParams p;
  p.tokens = {0, 1};
  p.topK = 1;
  auto expectError = [&](const OvQkParams& bad, const std::string& words) {
    try {
      (void)ovQkCircuits(*model, bad, &ctx);
      ADD_FAILURE() << "no InputError for " << words;
    } catch (const InputError& e) {
      EXPECT_NE(std::string(e.what()).find(words), std::string::npos) << e.what();
    }
  };
  OvQkParams q = p;
  q.queryTokens = {0, 3};
  q.keyTokens = {1};
  expectError(q, "--query-tokens token id 3 is outside the vocabulary [0, 3)");
  q.queryTokens = {0};
  q.keyTokens = {-1};
  expectError(q, "--key-tokens token id -1");
  q = p;
  q.tokens = {0, 7};
  expectError(q, "token id 7");
  q.tokens = {};
  expectError(q, "empty");
  q = p;
  q.topK = 4;
  expectError(q, "--top-k 4");
  q = p;
  q.heads = {HeadRef{1, 0}};
  expectError(q, "--heads 1.0");
  q = p;
  q.position = 0;
  expectError(q, "rotary");
  EXPECT_EQ(steps, 0);
}

/// The look-up's diagonal is what the forward pass scores at layer 0 for a one-token prompt (the residual is
/// the bare embedding, rotary at position 0 is the identity, GPT-2 adds W_pos[0]). Bound: the forward is fp32
/// along ≤ 3·d_model + d_head summed terms (norm statistics, projection, dot): γ_N relative to the terms'
/// magnitudes, taken as 16·max(1, |score|) for their cancellation (as tests/common/rounding_bounds.hpp).
TEST(OvQk, LookupDiagonalIsTheForwardsLayerZeroScoreOnEveryFamily) {
  const std::filesystem::path shared = std::filesystem::path(MECHSCOPE_SHARED_DIR) / "fixtures" / "models";
  int families = 0;
  for (const std::string family : {"gpt2", "llama", "mistral", "pythia", "qwen2", "qwen3"}) {
    if (!std::filesystem::exists(shared / family / "model.safetensors")) continue;
    ++families;
    const auto model = HookedTransformer::load(shared / family);
    const ModelConfig& c = model->config();
    OvQkParams p;
    p.tokens = {3, 17, 400};
    p.queryTokens = p.tokens;
    p.keyTokens = p.tokens;
    if (c.positional == PositionalKind::Learned) p.position = 0;
    const OvQkResult r = ovQkCircuits(*model, p);
    // With T = the whole vocabulary the T×T score is the full-vocabulary one, associated the other way
    // (E_T·W_V first instead of W_Uᵀ·W_E): fp64, N ≈ vocab + 2·d_model + d_head terms (γ_N ≈ 1.3e-13), times
    // d_head eigenvalues, κ ≤ 1e3 and ‖|A||B|‖/Σ|λ| ≤ 10 as on the trained models: < 1e-7.
    OvQkParams all;
    for (int64_t t = 0; t < c.dVocab; ++t) all.tokens.push_back(t);
    const OvQkResult v = ovQkCircuits(*model, all);
    EXPECT_TRUE(at::allclose(v.copyEigen, v.copyEigenVocab, 0.0, 1e-7)) << family << '\n' << v.copyEigen - v.copyEigenVocab;
    const double gammaN = test::gamma(3.0 * c.dModel + c.dHead + 16.0);
    for (size_t i = 0; i < p.tokens.size(); ++i) {
      const auto cache = model->runWithCache(at::tensor({p.tokens[i]}, at::kLong).unsqueeze(0), {"blocks.0.attn.hook_attn_scores"});
      const at::Tensor scores = cache.get("blocks.0.attn.hook_attn_scores").to(at::kDouble);  // [1, head, 1, 1]
      for (int64_t h = 0; h < c.nHeads; ++h) {
        const double want = scores[0][h][0][0].item<double>();
        EXPECT_NEAR(r.qk[0][h][static_cast<int64_t>(i)][static_cast<int64_t>(i)].item<double>(), want, 16.0 * gammaN * std::max(1.0, std::abs(want)))
            << family << " head " << h << " token " << p.tokens[i];
      }
    }
  }
  if (families == 0) GTEST_SKIP() << "no fixture models under " << shared;
}

}  // namespace
}  // namespace mechscope::analysis
