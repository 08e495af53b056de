#include "core/synth/planted_family_builder.hpp"

#include <ATen/ATen.h>

#include <algorithm>
#include <cmath>
#include <map>

#include <fmt/format.h>

#include "core/common/errors.hpp"
#include "core/model/family_spec.hpp"
#include "core/model/rotary.hpp"
#include "core/synth/loader_inverse.hpp"
#include "core/synth/planted_family_config.hpp"
#include "core/synth/planted_vocab.hpp"

namespace mechscope::planted {
namespace {

using S = FamilyShape;

/// Residual layout of the per-family planted models (d_model 512). Every feature is mean-free (zero-sum codes,
/// flags with a mirror), so LayerNorm (GPT-NeoX) only rescales, like RMSNorm.
struct FamLayout {
  static constexpr int kTok = 0;         // [32] token identity code
  static constexpr int kPrev = 32;       // [32] previous token's code (previous-token head)
  static constexpr int kLogit = 64;      // [32] code of the token to predict (induction head), read by the unembedding
  static constexpr int kFlags = 96;      // [16] flags, mirror at kFlagMirror
  static constexpr int kFlagMirror = 112;
  static constexpr int kStab = 128;      // [384] stabiliser ±σ
  static constexpr int kStabDims = S::kDModel - kStab;
};
using FL = FamLayout;
enum FamFlag : int { kAllF = 0, kBosFlag = 1, kNonBosF = 2 };

// Scores in nats (after the family's attention scale, rotary attention factor and soft-cap are compensated).
constexpr double kPrevMargin = 12.0;      // previous-token head: key i−1 over the nearest other key
constexpr double kSinkScore = 14.0;       // sink head: BOS over every other key
constexpr double kInductionScore = 24.0;  // induction head: TOK_i · PREV_j
constexpr double kInductionBos = 12.0;    // induction head's fallback onto BOS
constexpr double kLogitGain = 20.0;       // unembedding gain on LOGIT
constexpr double kBosRms = 4.0;           // BOS residual RMS in pre-norm families (its massive activation)
constexpr double kOutBallast = 20.0;      // post-norm families: norm of the constant in the attention output
constexpr double kLearnedSink = -60.0;    // gpt-oss: learned sink logits (no mass)
constexpr double kMaxStaticAngle = 0.05;  // content dims may turn at most this far over kMaxPositions
constexpr double kSlack = 0.03;           // relative score error allowed for norm rescaling
constexpr int kMaxKernelPairs = 16;

constexpr int kPrevHead = 0, kSinkHead = 1, kInductionHead = 0;

/// Rotary frequencies of one layer as the forward pass uses them.
struct LayerRotary {
  int rd = 0;               // rotated dims per head
  std::vector<double> omega;  // [rd / 2] radians per token
  double factor = 1.0;      // cos and sin × this (LongRope, YaRN)
};

/// The attention bounds a construction guarantees (every row of a prompt of ≤ kMaxPositions tokens).
struct Bounds {
  double prevToken = 0, sink = 0, induction = 0, inductionIdleBos = 0;
  int kernelPairs = 0;
  double kernelGap = 0, kernelScale = 0;
  std::vector<double> staticAngle;  // per layer: largest rotation of a content dim over kMaxPositions
};

double softcap(double s, double cap) { return cap > 0 ? std::tanh(s / cap) * cap : s; }

class FamilyBuilder {
 public:
  explicit FamilyBuilder(std::string family)
      : m_family(std::move(family)),
        m_configJson(plantedFamilyConfig(m_family)),
        m_cfg(ModelConfig::fromJson(m_configJson, "planted config")),
        m_spec(findFamily(m_cfg.modelType)),
        m_inverse(*m_spec, m_cfg),
        m_w(m_inverse.zeroCanonical()) {
    m_scale = m_cfg.attentionScale();
    m_bosRms = m_cfg.preNorms ? kBosRms : 1.0;  // OLMo-2's attention reads the raw residual
  }

  PlantedWeights build();

 private:
  // ---- canonical weight access ([out, in] Linear layout) ------------------------------------------------
  static float& at2(at::Tensor& t, int64_t r, int64_t c) { return t.data_ptr<float>()[r * t.size(1) + c]; }
  int dh() const { return m_cfg.dHead; }
  int kvOf(int h) const { return h / (m_cfg.nHeads / m_cfg.nKvHeads); }
  float& wq(int l, int h, int d, int feat) { return at2(m_w.layers[l].wQ, int64_t{h} * dh() + d, feat); }
  float& wk(int l, int g, int d, int feat) { return at2(m_w.layers[l].wK, int64_t{g} * dh() + d, feat); }
  float& wv(int l, int g, int d, int feat) { return at2(m_w.layers[l].wV, int64_t{g} * dh() + d, feat); }
  float& wo(int l, int h, int d, int out) { return at2(m_w.layers[l].wO, out, int64_t{h} * dh() + d); }
  static void fill(at::Tensor& t, double v) {
    if (t.defined()) t.fill_(v);
  }

  // ---- rotary bookkeeping -------------------------------------------------------------------------------
  LayerRotary rotaryOf(int l) const;
  /// q weight on dim d that makes a score of `score` nats per unit of q-feature × k-feature.
  double qWeight(int l, int d, double score) const {
    const auto& r = m_rot[l];
    const double af = d < r.rd ? r.factor * r.factor : 1.0;
    return score / (m_scale * af);
  }
  /// The next content dim of layer l: non-rotated dims first, then rotary pairs from the lowest frequency.
  int staticDim(int l);
  /// A named content dim of layer l (the same dim for every key/value head).
  int slot(int l, const std::string& name) {
    auto& m = m_slots[l];
    if (auto it = m.find(name); it != m.end()) return it->second;
    return m[name] = staticDim(l);
  }

  // ---- heads ----------------------------------------------------------------------------------------------
  void embeddings();
  void unembedding();
  void previousTokenHead(int l, int h);
  void sinkHead(int l, int h);
  void inductionHead(int l, int h);
  void valueSlots(int l);
  void compensateQkNorm(int l);
  void compensatePostNorms(int l);
  void norms();
  void computeBounds();
  void record(int l, int h, std::vector<std::string> roles, const std::string& pattern) {
    m_heads.push_back({{"layer", l}, {"head", h}, {"roles", roles}, {"pattern", pattern}});
  }
  nlohmann::json plantedJson() const;

  std::string m_family;
  nlohmann::json m_configJson;
  ModelConfig m_cfg;
  const FamilySpec* m_spec;
  LoaderInverse m_inverse;
  ModelWeights m_w;
  double m_scale = 1.0, m_bosRms = 1.0;
  std::vector<LayerRotary> m_rot;
  std::vector<std::map<std::string, int>> m_slots;
  std::vector<std::vector<int>> m_used;        // per layer: dims taken (content, kernel, ballast)
  std::vector<double> m_staticAngle;           // per layer: largest content-dim rotation over kMaxPositions
  std::vector<double> m_kernelA;               // previous-token kernel amplitudes (layer 0)
  double m_kernelGap = 0;
  nlohmann::json m_heads = nlohmann::json::array();
  Bounds m_bounds;
};

LayerRotary FamilyBuilder::rotaryOf(int l) const {
  LayerRotary r;
  r.rd = m_cfg.rotaryDim;
  const bool sliding = m_cfg.windowOf(l) > 0 && m_cfg.slidingRope.has_value();
  const double theta = sliding ? m_cfg.slidingRope->theta : m_cfg.ropeTheta;
  const RopeScaling& scaling = sliding ? m_cfg.slidingRope->scaling : m_cfg.ropeScaling;
  // LongRope: prompts within original_max_position_embeddings use the short factors.
  const at::Tensor inv = ropeInvFreq(r.rd, theta, scaling, at::kCPU, false).to(at::kDouble).contiguous();  // [rd / 2]
  r.omega.assign(inv.data_ptr<double>(), inv.data_ptr<double>() + inv.numel());
  r.factor = scaling.attentionFactor;
  return r;
}

int FamilyBuilder::staticDim(int l) {
  const auto& r = m_rot[l];
  std::vector<std::pair<int, double>> order;  // (dim, omega)
  for (int d = r.rd; d < dh(); ++d) order.emplace_back(d, 0.0);
  for (int p = r.rd / 2 - 1; p >= 0; --p) {
    order.emplace_back(p, r.omega[p]);
    order.emplace_back(p + r.rd / 2, r.omega[p]);
  }
  auto& used = m_used[l];
  for (const auto& [d, omega] : order) {
    if (std::find(used.begin(), used.end(), d) != used.end()) continue;
    used.push_back(d);
    const double angle = omega * S::kMaxPositions;
    m_staticAngle[l] = std::max(m_staticAngle[l], angle);
    if (angle > kMaxStaticAngle)
      throw Error(fmt::format("plant {}: layer {} has too few slow rotary dims for its content (dim {} turns {:.3f} rad "
                              "over {} positions)", m_family, l, d, angle, S::kMaxPositions));
    return d;
  }
  throw Error(fmt::format("plant {}: layer {} has no free dim left", m_family, l));
}

void FamilyBuilder::embeddings() {
  const auto& vocab = vocabulary();
  const double sigma = std::sqrt((S::kDModel - 5.0) / FL::kStabDims);  // non-BOS: |x|² = D exactly (RMS 1)
  at::Tensor& wE = m_w.wE;                                               // [vocab, d_model]
  for (size_t t = 0; t < vocab.size(); ++t) {
    const bool bos = vocab[t].kind == WordKind::Bos;
    // BOS: flags and stabiliser scaled so its RMS is kBosRms and its flags read 1 after the pre-norm.
    const double r = bos ? m_bosRms : 1.0;
    const double stab = bos ? r * std::sqrt((S::kDModel - 4.0) / FL::kStabDims) : sigma;
    const auto code = tokenCode(static_cast<int64_t>(t));
    const int64_t row = static_cast<int64_t>(t);
    for (int c = 0; c < kCodeDim; ++c) at2(wE, row, FL::kTok + c) = code[c];
    // Stabiliser signs: + − + − … for words, + + − − … for BOS (orthogonal, both zero-sum), so no word's
    // hidden state is aligned with BOS's (the sinks analysis sees no secondary sink).
    for (int i = 0; i < FL::kStabDims; ++i) {
      const bool plus = bos ? (i / 2) % 2 == 0 : i % 2 == 0;
      at2(wE, row, FL::kStab + i) = static_cast<float>(plus ? stab : -stab);
    }
    for (int f : {static_cast<int>(kAllF), static_cast<int>(bos ? kBosFlag : kNonBosF)}) {
      at2(wE, row, FL::kFlags + f) = static_cast<float>(r);
      at2(wE, row, FL::kFlagMirror + f) = static_cast<float>(-r);
    }
  }
  // Gemma multiplies the embeddings by √d_model: store them divided by it.
  wE.div_(m_cfg.embedScale);
}

void FamilyBuilder::unembedding() {
  const auto& vocab = vocabulary();
  for (size_t t = 0; t < vocab.size(); ++t) {
    const auto code = tokenCode(static_cast<int64_t>(t));
    const int64_t row = static_cast<int64_t>(t);
    for (int c = 0; c < kCodeDim; ++c) at2(m_w.wU, row, FL::kLogit + c) = static_cast<float>(kLogitGain * code[c]);
    if (vocab[t].kind == WordKind::Bos || vocab[t].kind == WordKind::Unk) at2(m_w.wU, row, FL::kFlags + kAllF) = -6.0f;
  }
}

void FamilyBuilder::valueSlots(int l) {
  // Every key/value head carries the token code in value dims 0..31 and the constant ALL in dim 32.
  for (int g = 0; g < m_cfg.nKvHeads; ++g) {
    for (int c = 0; c < kCodeDim; ++c) wv(l, g, c, FL::kTok + c) = 1.0f;
    wv(l, g, kCodeDim, FL::kFlags + kAllF) = 1.0f;
  }
}

void FamilyBuilder::previousTokenHead(int l, int h) {
  // score(Δ) = Σ_{p<M} (T/M) cos(ω_p (Δ − 1)) − T over the M fastest rotary pairs, Δ = i − j: 0 at Δ = 1,
  // at most −gap·T elsewhere (gap measured on this layer's frequencies over kMaxPositions).
  const auto& r = m_rot[l];
  const int maxPairs = std::min(kMaxKernelPairs, r.rd / 2 - 1);
  int bestM = 0;
  double bestGap = -1;
  for (int M = 1; M <= maxPairs; ++M) {
    double gap = 1e9;
    for (int d = 0; d < S::kMaxPositions; ++d) {
      if (d == 1) continue;
      double s = 0;
      for (int p = 0; p < M; ++p) s += 1.0 - std::cos(r.omega[p] * (d - 1));
      gap = std::min(gap, s / M);
    }
    if (gap > bestGap) bestGap = gap, bestM = M;
  }
  m_kernelGap = bestGap;
  const double T = kPrevMargin / bestGap;
  m_kernelA.assign(static_cast<size_t>(bestM), T / bestM);
  const int g = kvOf(h);
  for (int p = 0; p < bestM; ++p) {
    m_used[l].push_back(p);
    m_used[l].push_back(p + r.rd / 2);
    wq(l, h, p, FL::kFlags + kAllF) += static_cast<float>(qWeight(l, p, T / bestM));
    wk(l, g, p, FL::kFlags + kAllF) = static_cast<float>(std::cos(r.omega[p]));
    wk(l, g, p + r.rd / 2, FL::kFlags + kAllF) = static_cast<float>(std::sin(r.omega[p]));
  }
  const int off = slot(l, "one");
  wk(l, g, off, FL::kFlags + kAllF) = 1.0f;
  wq(l, h, off, FL::kFlags + kAllF) += static_cast<float>(qWeight(l, off, -T));
  for (int c = 0; c < kCodeDim; ++c) wo(l, h, c, FL::kPrev + c) = 1.0f;  // OV: TOK of j → PREV
  record(l, h, {"previous_token"}, "local");
}

void FamilyBuilder::sinkHead(int l, int h) {
  const int d = slot(l, "bos");
  wk(l, kvOf(h), d, FL::kFlags + kBosFlag) = 1.0f;
  wq(l, h, d, FL::kFlags + kAllF) += static_cast<float>(qWeight(l, d, kSinkScore));
  record(l, h, {"primary_sink"}, "global");
}

void FamilyBuilder::inductionHead(int l, int h) {
  const int g = kvOf(h);
  for (int c = 0; c < kCodeDim; ++c) {
    const int d = slot(l, fmt::format("code{}", c));
    wk(l, g, d, FL::kPrev + c) = 1.0f;  // key: the previous token's code
    wq(l, h, d, FL::kTok + c) += static_cast<float>(qWeight(l, d, kInductionScore));  // query: my code
  }
  const int b = slot(l, "bos");
  wk(l, g, b, FL::kFlags + kBosFlag) = 1.0f;
  wq(l, h, b, FL::kFlags + kAllF) += static_cast<float>(qWeight(l, b, kInductionBos));
  for (int c = 0; c < kCodeDim; ++c) wo(l, h, c, FL::kLogit + c) = 1.0f;  // OV: copy the attended token
  record(l, h, {"induction", "retrieval", "copy"}, "global");
}

void FamilyBuilder::compensateQkNorm(int l) {
  // RMSNorm over each head's q (k) or over the whole projection (OLMo-2): a ballast dim holding √n (n = the
  // normalised size) from ALL makes the RMS 1 up to (1 + |κq|²/n)^½; the real dims are shrunk by κ before and
  // multiplied by 1/κ after (the norm weight), the ballast's weight is 0.
  if (!m_cfg.qkNorm) return;
  LayerWeights& L = m_w.layers[l];
  int ballast = -1;
  for (int d = 0; d < dh() && ballast < 0; ++d)
    if (std::find(m_used[l].begin(), m_used[l].end(), d) == m_used[l].end()) ballast = d;
  if (ballast < 0) throw Error(fmt::format("plant {}: layer {} has no dim left for the q/k-norm ballast", m_family, l));
  m_used[l].push_back(ballast);
  auto one = [&](at::Tensor& W, at::Tensor& normW, int heads) {
    const double kappa = 0.01 / (3.0 * std::max(W.norm().item<double>(), 1e-6));
    W.mul_(kappa);
    const int n = m_cfg.qkNormWhole ? heads * dh() : dh();
    normW.fill_(1.0 / kappa);
    for (int h = 0; h < (m_cfg.qkNormWhole ? 1 : heads); ++h) at2(W, int64_t{h} * dh() + ballast, FL::kFlags + kAllF) = static_cast<float>(std::sqrt(n));
    for (int64_t i = ballast; i < normW.numel(); i += dh()) {
      normW[i] = 0.0;
      if (m_cfg.qkNormWhole) break;  // one ballast for the whole projection
    }
  };
  one(L.wQ, L.qNormW, m_cfg.nHeads);
  one(L.wK, L.kNormW, m_cfg.nKvHeads);
}

void FamilyBuilder::compensatePostNorms(int l) {
  // Gemma 2/3, OLMo-2 RMS-normalise the attention output: the sink head adds a constant of norm kOutBallast
  // (from ALL) on stabiliser dims whose post-norm weight is 0; the signal dims get weight kOutBallast/√D, so a
  // signal s comes through as s/√(1 + |s|²/kOutBallast²).
  LayerWeights& L = m_w.layers[l];
  if (!m_cfg.postAttnNorm) return;
  const double b = kOutBallast / 4.0;  // 16 dims
  for (int i = 0; i < 16; ++i) wo(l, kSinkHead, kCodeDim, FL::kStab + i) = static_cast<float>(i % 2 == 0 ? b : -b);
  L.ln1PostW.zero_();
  const double w = kOutBallast / std::sqrt(static_cast<double>(S::kDModel));
  L.ln1PostW.narrow(0, FL::kPrev, 2 * kCodeDim).fill_(w);  // PREV and LOGIT
}

void FamilyBuilder::norms() {
  for (auto& L : m_w.layers) {
    for (at::Tensor* t : {&L.ln1W, &L.ln2W, &L.ln2PostW}) fill(*t, 1.0);
    fill(L.sinks, kLearnedSink);
  }
  fill(m_w.lnFinalW, 1.0);
}

void FamilyBuilder::computeBounds() {
  // Norm rescaling (pre-norm RMS within 0.2 % of 1, q/k ballast, post-norm factor ≥ 0.998) multiplies a row's
  // scores by a factor within kSlack of 1: positive scores are taken kSlack smaller, negative ones kSlack closer
  // to 0, against the target; then the family's soft-cap and, for gpt-oss, the learned sink column.
  const double cap = m_cfg.attnSoftcap;
  const int N = S::kMaxPositions;
  const double sinkTerm = m_cfg.attnSinks ? 1.0 : 0.0;
  auto worse = [](double s) { return s > 0 ? s * (1 + kSlack) : s * (1 - kSlack); };   // a competitor
  auto weaker = [](double s) { return s > 0 ? s * (1 - kSlack) : s * (1 + kSlack); };  // the target
  auto share = [&](double target, const std::vector<std::pair<double, double>>& others) {  // (score, count)
    const double t = softcap(weaker(target), cap);
    double denom = 1.0 + sinkTerm * std::exp(kLearnedSink - t);
    for (const auto& [s, n] : others) denom += n * std::exp(softcap(worse(s), cap) - t);
    return 1.0 / denom;
  };
  // Previous-token head: score(Δ) = Σ_p A_p cos(ω_p(Δ − 1)) − T, exactly 0 at Δ = 1 and ≤ 0 elsewhere.
  const double T = kPrevMargin / m_kernelGap;
  const auto& r = m_rot[0];
  double prev = 1.0;
  for (int i = 1; i < N; ++i) {
    std::vector<std::pair<double, double>> others;
    for (int d = 0; d <= i; ++d) {
      if (d == 1) continue;
      double s = -T;
      for (size_t p = 0; p < m_kernelA.size(); ++p) s += m_kernelA[p] * std::cos(r.omega[p] * (d - 1));
      others.emplace_back(s, 1.0);
    }
    prev = std::min(prev, share(0.0, others));
  }
  // Sink heads: BOS at kSinkScore (on slow dims: × cos φ), every other key 0.
  const double sink = share(kSinkScore * std::cos(std::max(m_staticAngle[0], m_staticAngle[1])), {{0.0, N - 1.0}});
  // Induction head: PREV_j = Σ_k a_jk c_k ⇒ ⟨c_i, PREV_j⟩ ≥ 2a − 1 at the copy's successor and ≤ 1 − a at other
  // keys; content dims turn by at most φ, which moves a score by at most φ·|q||k|.
  const double eta = m_staticAngle[1];
  const double match = kInductionScore * (2 * prev - 1 - eta), other = kInductionScore * (1 - prev + eta);
  const double bosHi = kInductionBos + kInductionScore * eta, bosLo = kInductionBos - kInductionScore * eta;
  const double ind = share(match, {{bosHi, 1.0}, {other, N - 2.0}});
  const double idle = share(bosLo, {{other, N - 1.0}});
  m_bounds = {prev, sink, ind, idle, static_cast<int>(m_kernelA.size()), m_kernelGap, T, m_staticAngle};
  if (prev < 0.95 || sink < 0.95 || ind < 0.9 || idle < 0.9)
    throw Error(fmt::format("plant {}: the construction does not reach its bounds (previous-token {:.4f}, sink {:.4f}, "
                            "induction {:.4f}, idle {:.4f})", m_family, prev, sink, ind, idle));
}

nlohmann::json FamilyBuilder::plantedJson() const {
  auto withRole = [&](const std::string& role) {
    nlohmann::json arr = nlohmann::json::array();
    for (const auto& h : m_heads)
      if (std::find(h["roles"].begin(), h["roles"].end(), role) != h["roles"].end()) arr.push_back({h["layer"], h["head"]});
    return arr;
  };
  const Bounds& b = m_bounds;
  return {
      {"recipe", "default"},
      {"family", m_family},
      {"description", "Per-family planted model: BOS sink heads, a previous-token head and an induction/retrieval head "
                      "written through the family's loader; every other head and every MLP is zero."},
      {"heads", m_heads},
      {"expected",
       {{"previous_token_heads", withRole("previous_token")},
        {"sink_heads", withRole("primary_sink")},
        {"induction_heads", withRole("induction")},
        {"retrieval_heads", withRole("retrieval")},
        {"primary_sink", {{"position", 0}}}}},
      {"bounds",
       {{"max_positions", S::kMaxPositions},
        {"previous_token_attention", b.prevToken},
        {"sink_bos_attention", b.sink},
        {"induction_attention", b.induction},
        {"induction_idle_bos_attention", b.inductionIdleBos},
        {"note", "minimum over every row of a prompt of at most max_positions tokens of the planted vocabulary; "
                 "induction: rows whose token occurred once before (non-adjacent repeats), idle: rows whose token did not"}}},
      {"arithmetic",
       {{"attention_scale", m_scale},
        {"previous_token_kernel", {{"pairs", b.kernelPairs}, {"gap", b.kernelGap}, {"scale", b.kernelScale},
                                   {"margin", kPrevMargin}}},
        {"sink_score", kSinkScore},
        {"induction_score", kInductionScore},
        {"induction_bos_score", kInductionBos},
        {"logit_gain", kLogitGain},
        {"bos_rms", m_bosRms},
        {"content_rotation", b.staticAngle},
        {"rotary_attention_factor", {m_rot[0].factor, m_rot[1].factor}},
        {"learned_sink_logit", m_cfg.attnSinks ? nlohmann::json(kLearnedSink) : nlohmann::json(nullptr)}}},
  };
}

PlantedWeights FamilyBuilder::build() {
  if (m_cfg.positional != PositionalKind::Rotary || m_cfg.nLayers != 2)
    throw Error(fmt::format("plant {}: the per-family recipe needs a two-layer rotary model", m_family));
  m_slots.resize(2);
  m_used.resize(2);
  m_staticAngle.assign(2, 0.0);
  for (int l = 0; l < 2; ++l) m_rot.push_back(rotaryOf(l));
  embeddings();
  unembedding();
  norms();
  for (int l = 0; l < 2; ++l) valueSlots(l);
  // Layer 0: previous-token head (writes PREV), BOS sink. Layer 1: induction/retrieval head, BOS sink.
  previousTokenHead(0, kPrevHead);
  sinkHead(0, kSinkHead);
  inductionHead(1, kInductionHead);
  sinkHead(1, kSinkHead);
  for (int l = 0; l < 2; ++l) {
    compensateQkNorm(l);
    compensatePostNorms(l);
  }
  computeBounds();
  PlantedWeights out;
  out.tensors = m_inverse.checkpointFor(m_w);
  out.config = m_configJson;
  out.planted = plantedJson();
  return out;
}

}  // namespace

PlantedWeights buildFamilyPlantedWeights(const std::string& family) {
  if (family == "gpt2") throw InputError("plant: gpt2 has its own recipe (buildPlantedWeights)");
  return FamilyBuilder(family).build();
}

}  // namespace mechscope::planted
