#include "core/synth/planted_builder.hpp"

#include <ATen/ATen.h>

#include <cmath>

#include <fmt/format.h>

#include "core/common/errors.hpp"
#include "core/synth/planted_layout.hpp"
#include "core/synth/planted_vocab.hpp"

namespace mechscope::planted {
namespace {

using L = Layout;
constexpr float kSqrtDHead = 8.94427191f;  // sqrt(80): GPT-2 divides scores by sqrt(d_head)

// Position-code frequencies (radians per token). Chosen by a search for the lowest sidelobe of
// (1/F) Σ_f cos(ω_f Δ) over Δ = 1..1023 (max 0.47), so "position i−1" stands out from every other.
constexpr float kFreqs[L::kFreqs] = {0.0935f, 0.1912f, 0.3557f, 0.4223f, 0.5092f, 0.5486f, 0.9876f, 1.2768f,
                                     1.5311f, 1.8382f, 2.0273f, 2.3340f, 2.7129f, 2.9143f, 2.9711f, 3.0448f};

// Attention logit scales (in nats, before LayerNorm's ≈1 rescaling).
constexpr float kPosScale = 40.0f;     // previous-token / self heads
constexpr float kSinkScale = 30.0f;    // BOS sink heads
constexpr float kDupScale = 40.0f;     // duplicate-token head
constexpr float kInductionScale = 40.0f;
constexpr float kGatherScale = 40.0f;  // colour gatherer (Colored Objects)
constexpr float kInhibScale = 30.0f;   // S-inhibition
constexpr float kMoverScale = 30.0f;   // name/colour movers
constexpr float kLogitGain = 10.0f;    // lm_head gain on the LOGIT code

// Massive-activation amounts written by the MLPs along the SINK flag.
constexpr float kBosSink = 100.0f;       // layer 1: BOS gets its massive norm
constexpr float kBosSinkBoost = 10.0f;   // layer 8: the same MLP direction also on BOS
constexpr float kDelimSink = 60.0f;      // layer 8: the delimiter becomes a secondary sink
constexpr int kBosSinkLayer = 1, kSecondaryLayer = 8, kCollapseLayer = 14;

// Clamp unit: two GELU neurons give amount·clamp((x − t0)/w, 0, 1) for a detector value x.
constexpr float kClampGain = 200.0f, kClampT0 = 0.3f, kClampW = 0.3f;

enum class Pattern { Local, Global, Uniform };

struct HeadRecord {
  int layer, head;
  std::vector<std::string> roles;
  Pattern pattern;  // what its attention looks like on text without repeats, names or colours
};

class Builder {
 public:
  Builder() {
    const int D = L::kDModel, V = static_cast<int>(vocabulary().size());
    m_wte = at::zeros({V, D});
    m_wpe = at::zeros({L::kCtx, D});
    m_lmHead = at::zeros({V, D});
    for (int l = 0; l < L::kLayers; ++l) {
      m_cAttnW.push_back(at::zeros({D, 3 * D}));
      m_cAttnB.push_back(at::zeros({3 * D}));
      m_cProjW.push_back(at::zeros({D, D}));
      m_cFcW.push_back(at::zeros({D, L::kInner}));
      m_cFcB.push_back(at::zeros({L::kInner}));
      m_mlpProjW.push_back(at::zeros({L::kInner, D}));
    }
  }

  PlantedWeights build();

 private:
  // ---- residual writes -----------------------------------------------------------------------
  static void setFlag(at::Tensor row, Flag f, float v) {
    row[flagDim(f)] = v;
    row[flagMirrorDim(f)] = -v;
  }
  void embeddings();
  void unembedding();

  // ---- LayerNorm bookkeeping: BOS's residual is the same in every prompt (it attends only to itself,
  // and every head's value of BOS is zero), so its LayerNorm scale per layer is known exactly.
  static float bosSinkAt(int layer) {  // SINK amount in resid_pre of `layer`
    if (layer <= kBosSinkLayer) return 0.0f;
    if (layer <= kSecondaryLayer) return kBosSink;
    if (layer <= kCollapseLayer) return kBosSink + kBosSinkBoost;
    return 0.0f;
  }
  static float bosScale(int layer) {  // LN scale s of BOS at resid_pre/resid_mid of `layer`
    const float sink = bosSinkAt(layer);
    const float sq = L::kDModel + 2.0f /*BOS flag*/ + 2.0f /*position 0*/ + 2.0f * sink * sink;
    return std::sqrt(sq / L::kDModel);
  }
  /// Key weight on the BOS-identifying feature so BOS's key equals 1 at this layer.
  static std::pair<int, float> bosKey(int layer) {
    const float sink = bosSinkAt(layer);
    if (sink > 0) return {flagDim(kSink), bosScale(layer) / sink};
    return {flagDim(kBosF), bosScale(layer)};
  }

  // ---- attention helpers (GPT-2 Conv1D layout: x @ W, columns [q | k | v], head h at h*dh) ----
  float& wq(int l, int in, int h, int slot) { return ref(m_cAttnW[l], in, h * L::kDHead + slot); }
  float& wk(int l, int in, int h, int slot) { return ref(m_cAttnW[l], in, L::kDModel + h * L::kDHead + slot); }
  float& wv(int l, int in, int h, int slot) { return ref(m_cAttnW[l], in, 2 * L::kDModel + h * L::kDHead + slot); }
  float& bq(int l, int h, int slot) { return ref1(m_cAttnB[l], h * L::kDHead + slot); }
  float& wo(int l, int h, int slot, int out) { return ref(m_cProjW[l], h * L::kDHead + slot, out); }
  static float& ref(at::Tensor& t, int r, int c) { return t.data_ptr<float>()[r * t.size(1) + c]; }
  static float& ref1(at::Tensor& t, int i) { return t.data_ptr<float>()[i]; }

  /// score += scale · (code block at qBase of the query) · (code block at kBase of the key); 32 slots.
  void codeMatch(int l, int h, int slot, int qBase, int kBase, float scale) {
    for (int c = 0; c < kCodeDim; ++c) {
      wq(l, qBase + c, h, slot + c) += scale * kSqrtDHead;
      wk(l, kBase + c, h, slot + c) += 1.0f;
    }
  }
  /// score += bonus for BOS keys (constant query): the fallback every task head uses when idle.
  void bosBonus(int l, int h, int slot, float bonus) {
    bq(l, h, slot) += bonus * kSqrtDHead;
    const auto [dim, w] = bosKey(l);
    wk(l, dim, h, slot) += w;
  }
  /// Positional pattern: score = scale·p(i − shift)·p(j); shift 1 = previous token, 0 = self.
  void positional(int l, int h, int slot, int shift, float scale) {
    for (int f = 0; f < L::kFreqs; ++f) {
      const float c = std::cos(kFreqs[f] * shift), s = std::sin(kFreqs[f] * shift);
      const int pc = L::kPos + 2 * f, ps = pc + 1, qc = slot + 2 * f, qs = qc + 1;
      wq(l, pc, h, qc) += scale * kSqrtDHead * c;
      wq(l, ps, h, qc) += scale * kSqrtDHead * s;
      wq(l, pc, h, qs) += -scale * kSqrtDHead * s;
      wq(l, ps, h, qs) += scale * kSqrtDHead * c;
      wk(l, pc, h, qc) += 1.0f;
      wk(l, ps, h, qs) += 1.0f;
    }
  }
  /// OV: copy the code block at `from` of the attended token into the code block at `to` (gain g).
  void copyCode(int l, int h, int slot, int from, int to, float g) {
    for (int c = 0; c < kCodeDim; ++c) {
      wv(l, from + c, h, slot + c) += 1.0f;
      wo(l, h, slot + c, to + c) += g;
    }
  }
  /// OV: decode the code block at `from` into one-hot dims `to` (+ mirror at to+8) for the given tokens.
  void decodeCode(int l, int h, int slot, int from, int to, const std::vector<int64_t>& ids) {
    for (int c = 0; c < kCodeDim; ++c) wv(l, from + c, h, slot + c) += 1.0f;
    for (size_t k = 0; k < ids.size(); ++k) {
      const auto code = tokenCode(ids[k]);
      for (int c = 0; c < kCodeDim; ++c) {
        wo(l, h, slot + c, to + static_cast<int>(k)) += code[c];
        wo(l, h, slot + c, to + 8 + static_cast<int>(k)) -= code[c];
      }
    }
  }

  // ---- MLP clamp units -----------------------------------------------------------------------
  /// neurons n, n+1 of layer l: write amount·clamp(detector) along the SINK flag pair.
  void clampUnit(int l, int n, const std::vector<std::pair<int, float>>& detector, float amount) {
    for (const auto& [dim, a] : detector) {
      ref(m_cFcW[l], dim, n) += kClampGain * a;
      ref(m_cFcW[l], dim, n + 1) += kClampGain * a;
    }
    ref1(m_cFcB[l], n) = -kClampGain * kClampT0;
    ref1(m_cFcB[l], n + 1) = -kClampGain * (kClampT0 + kClampW);
    const float out = amount / (kClampGain * kClampW);
    ref(m_mlpProjW[l], n, flagDim(kSink)) += out;
    ref(m_mlpProjW[l], n, flagMirrorDim(kSink)) -= out;
    ref(m_mlpProjW[l], n + 1, flagDim(kSink)) -= out;
    ref(m_mlpProjW[l], n + 1, flagMirrorDim(kSink)) += out;
  }
  static std::vector<std::pair<int, float>> codeDetector(int64_t id, float scale) {
    std::vector<std::pair<int, float>> d;
    const auto code = tokenCode(id);
    for (int c = 0; c < kCodeDim; ++c) d.emplace_back(L::kTok + c, code[c] * scale);
    return d;
  }

  // ---- heads ---------------------------------------------------------------------------------
  void previousTokenHead(int l, int h, bool writesPrev);
  void selfHead(int l, int h);
  void sinkHead(int l, int h);
  void inductionHead(int l, int h, float gain);
  void duplicateHead(int l, int h);
  void gathererHead(int l, int h);
  void inhibitionHead(int l, int h);
  void moverHead(int l, int h);
  void mlps();
  void record(int l, int h, std::vector<std::string> roles, Pattern p) {
    m_heads.push_back({l, h, std::move(roles), p});
  }

  at::Tensor m_wte, m_wpe, m_lmHead;
  std::vector<at::Tensor> m_cAttnW, m_cAttnB, m_cProjW, m_cFcW, m_cFcB, m_mlpProjW;
  std::vector<HeadRecord> m_heads;
};

void Builder::embeddings() {
  const auto& vocab = vocabulary();
  for (size_t t = 0; t < vocab.size(); ++t) {
    auto row = m_wte[static_cast<int64_t>(t)];
    const auto code = tokenCode(static_cast<int64_t>(t));
    for (int c = 0; c < kCodeDim; ++c) row[L::kTok + c] = code[c];
    for (int i = 0; i < L::kStabDims; ++i) row[L::kStab + i] = (i % 2 == 0) ? L::kStabValue : -L::kStabValue;
    const WordKind kind = vocab[t].kind;
    setFlag(row, kind == WordKind::Bos ? kBosF : kOne, 1.0f);
    if (kind == WordKind::Name) setFlag(row, kNameF, 1.0f);
    if (kind == WordKind::Colour) setFlag(row, kColourF, 1.0f);
    if (kind == WordKind::Object) setFlag(row, kObjectF, 1.0f);
    if (kind == WordKind::Delimiter) setFlag(row, kDelimF, 1.0f);
  }
  const float norm = 1.0f / std::sqrt(static_cast<float>(L::kFreqs));
  for (int i = 0; i < L::kCtx; ++i) {
    auto row = m_wpe[i];
    for (int f = 0; f < L::kFreqs; ++f) {
      const float c = std::cos(kFreqs[f] * i) * norm, s = std::sin(kFreqs[f] * i) * norm;
      row[L::kPos + 2 * f] = c;
      row[L::kPos + 2 * f + 1] = s;
      row[L::kPosMirror + 2 * f] = -c;
      row[L::kPosMirror + 2 * f + 1] = -s;
    }
    if (i == 1) setFlag(row, kFirst, 1.0f);
  }
}

void Builder::unembedding() {
  const auto& vocab = vocabulary();
  for (size_t t = 0; t < vocab.size(); ++t) {
    auto row = m_lmHead[static_cast<int64_t>(t)];
    const auto code = tokenCode(static_cast<int64_t>(t));
    for (int c = 0; c < kCodeDim; ++c) row[L::kLogit + c] = kLogitGain * code[c];
    // A small unigram preference (read from the constant ONE flag): "." when nothing is copied.
    float bias = 0.0f;
    if (vocab[t].kind == WordKind::Bos) bias = -3.0f;
    if (vocab[t].kind == WordKind::Unk) bias = -5.0f;
    if (vocab[t].text == ".") bias = 1.0f;
    row[flagDim(kOne)] = bias;
  }
}

void Builder::previousTokenHead(int l, int h, bool writesPrev) {
  positional(l, h, 0, 1, kPosScale);
  if (writesPrev) {
    copyCode(l, h, 32, L::kTok, L::kPrev, 1.0f);
    wv(l, flagDim(kColourF), h, 64) += 1.0f;  // and whether the previous token is a colour
    wo(l, h, 64, flagDim(kPrevColourF)) += 1.0f;
    wo(l, h, 64, flagMirrorDim(kPrevColourF)) -= 1.0f;
    record(l, h, {"previous_token"}, Pattern::Local);
  } else {
    record(l, h, {"local_pattern"}, Pattern::Local);
  }
}

void Builder::selfHead(int l, int h) {
  positional(l, h, 0, 0, kPosScale);
  record(l, h, {"local_pattern"}, Pattern::Local);
}

void Builder::sinkHead(int l, int h) {
  bosBonus(l, h, 0, kSinkScale);
  const bool seesSecondary = bosSinkAt(l) > 0 && l > kSecondaryLayer;
  record(l, h, seesSecondary ? std::vector<std::string>{"primary_sink", "secondary_sink_reader"}
                             : std::vector<std::string>{"primary_sink"},
         Pattern::Global);
}

void Builder::inductionHead(int l, int h, float gain) {
  codeMatch(l, h, 0, L::kTok, L::kPrev, kInductionScale);  // key: the token after an earlier copy of mine
  bosBonus(l, h, 32, kInductionScale / 2);
  copyCode(l, h, 40, L::kTok, L::kLogit, gain);            // OV: predict the attended token
  record(l, h, {"induction", "retrieval", "copy"}, Pattern::Global);
}

void Builder::duplicateHead(int l, int h) {
  codeMatch(l, h, 0, L::kTok, L::kTok, kDupScale);     // same token…
  codeMatch(l, h, 32, L::kPrev, L::kPrev, -kDupScale); // …but not the same bigram (excludes itself)
  bosBonus(l, h, 64, kDupScale / 2);
  // Row 1 (previous token = BOS, which has no code) would tie with itself: +α for BOS there.
  wq(l, flagDim(kFirst), h, 65) += kDupScale * kSqrtDHead;
  const auto [dim, w] = bosKey(l);
  wk(l, dim, h, 65) += w;
  wv(l, flagDim(kOne), h, 70) += 1.0f;  // OV: a constant "I am a repeat" flag
  wo(l, h, 70, flagDim(kDupF)) += 1.0f;
  wo(l, h, 70, flagMirrorDim(kDupF)) -= 1.0f;
  record(l, h, {"duplicate_token"}, Pattern::Global);
}

void Builder::gathererHead(int l, int h) {
  codeMatch(l, h, 0, L::kPrev, L::kTok, kGatherScale);  // find the earlier copy of the previous token
  // …preferring the copy preceded by a colour (the object's description, not the question).
  // (A flag, not the colour codes: a code-sum would also penalise the colours' antipode tokens.)
  bq(l, h, 32) += kGatherScale * kSqrtDHead;
  wk(l, flagDim(kPrevColourF), h, 32) += 1.0f;
  bosBonus(l, h, 33, kGatherScale / 2);
  decodeCode(l, h, 40, L::kPrev, L::kCand, idsOfKind(WordKind::Colour));  // OV: that colour → CAND
  record(l, h, {"colored_objects_gatherer"}, Pattern::Local);
}

void Builder::inhibitionHead(int l, int h) {
  bq(l, h, 0) += kInhibScale * kSqrtDHead;  // key: a name (+1) that is repeated (+1)
  wk(l, flagDim(kNameF), h, 0) += 1.0f;
  wk(l, flagDim(kDupF), h, 0) += 1.0f;
  bosBonus(l, h, 1, 1.5f * kInhibScale);
  decodeCode(l, h, 8, L::kTok, L::kInhib, idsOfKind(WordKind::Name));  // OV: that name → INHIB
  record(l, h, {"s_inhibition"}, Pattern::Global);
}

void Builder::moverHead(int l, int h) {
  // Query over codes: +c for every name/colour, −γ for the inhibited name, +κ for the candidate colour.
  std::vector<float> movable(kCodeDim, 0.0f);
  for (auto kind : {WordKind::Name, WordKind::Colour})
    for (int64_t id : idsOfKind(kind)) {
      const auto code = tokenCode(id);
      for (int c = 0; c < kCodeDim; ++c) movable[c] += code[c];
    }
  const auto names = idsOfKind(WordKind::Name), colours = idsOfKind(WordKind::Colour);
  for (int c = 0; c < kCodeDim; ++c) {
    bq(l, h, c) += kMoverScale * kSqrtDHead * movable[c];
    for (size_t k = 0; k < names.size(); ++k)
      wq(l, L::kInhib + static_cast<int>(k), h, c) -= kMoverScale * kSqrtDHead * tokenCode(names[k])[c];
    for (size_t k = 0; k < colours.size(); ++k)
      wq(l, L::kCand + static_cast<int>(k), h, c) += kMoverScale * kSqrtDHead * tokenCode(colours[k])[c];
    wk(l, L::kTok + c, h, c) += 1.0f;
  }
  bosBonus(l, h, 32, kMoverScale / 2);
  copyCode(l, h, 40, L::kTok, L::kLogit, 1.0f);
  record(l, h, {"mover", "ioi", "colored_objects"}, Pattern::Global);
}

void Builder::mlps() {
  const int64_t delim = tokenId(kDelimiter);
  // Layer 1: BOS acquires its massive SINK activation (the primary sink's norm switches on).
  clampUnit(kBosSinkLayer, 0, {{flagDim(kBosF), bosScale(kBosSinkLayer)}}, kBosSink);
  // Layer 8: the delimiter is mapped onto the same direction (secondary sink), BOS gets a little more.
  clampUnit(kSecondaryLayer, 0, codeDetector(delim, 1.0f), kDelimSink);
  clampUnit(kSecondaryLayer, 2, {{flagDim(kBosF), bosScale(kSecondaryLayer)}}, kBosSinkBoost);
  // Layer 14: both collapse (the clipper window ends here).
  clampUnit(kCollapseLayer, 0, {{flagDim(kBosF), bosScale(kCollapseLayer)}}, -(kBosSink + kBosSinkBoost));
  const float delimScale = std::sqrt((L::kDModel + 2 * kDelimSink * kDelimSink + 8.0f) / L::kDModel);
  clampUnit(kCollapseLayer, 2, codeDetector(delim, delimScale), -kDelimSink);
}

PlantedWeights Builder::build() {
  embeddings();
  unembedding();
  // Layer 0: previous-token head (writes PREV), a BOS sink, two local patterns.
  previousTokenHead(0, 0, true);
  sinkHead(0, 1);
  selfHead(0, 2);
  previousTokenHead(0, 3, false);
  // Layer 1: induction/retrieval, duplicate-token, Colored-Objects gatherer, sink.
  inductionHead(1, 0, 1.0f);
  duplicateHead(1, 1);
  gathererHead(1, 2);
  sinkHead(1, 3);
  // Layer 2: a second (weaker) retrieval head, S-inhibition, a local pattern, a sink.
  inductionHead(2, 0, 0.5f);
  inhibitionHead(2, 1);
  previousTokenHead(2, 2, false);
  sinkHead(2, 3);
  // Layer 3: two movers shared by both tasks, a local pattern, one uniform head.
  moverHead(3, 0);
  moverHead(3, 1);
  selfHead(3, 2);
  record(3, 3, {"uniform"}, Pattern::Uniform);
  // Layers 4..23: a sink head each (those in 9..14 also sink onto the secondary sink), local patterns,
  // and uniform heads, in numbers that make the 30 % local/global split exact (29 of 96 each).
  for (int l = 4; l < L::kLayers; ++l) {
    sinkHead(l, 0);
    if (l % 2 == 0) previousTokenHead(l, 1, false); else selfHead(l, 1);
    if (l <= 6) previousTokenHead(l, 2, false); else record(l, 2, {"uniform"}, Pattern::Uniform);
    record(l, 3, {"uniform"}, Pattern::Uniform);
  }
  mlps();

  PlantedWeights out;
  const auto ones = at::ones({L::kDModel});
  const auto zeros = at::zeros({L::kDModel});
  out.tensors.emplace_back("transformer.wte.weight", m_wte);
  out.tensors.emplace_back("transformer.wpe.weight", m_wpe);
  for (int l = 0; l < L::kLayers; ++l) {
    const auto p = fmt::format("transformer.h.{}.", l);
    out.tensors.emplace_back(p + "ln_1.weight", ones.clone());
    out.tensors.emplace_back(p + "ln_1.bias", zeros.clone());
    out.tensors.emplace_back(p + "attn.c_attn.weight", m_cAttnW[l]);
    out.tensors.emplace_back(p + "attn.c_attn.bias", m_cAttnB[l]);
    out.tensors.emplace_back(p + "attn.c_proj.weight", m_cProjW[l]);
    out.tensors.emplace_back(p + "attn.c_proj.bias", zeros.clone());
    out.tensors.emplace_back(p + "ln_2.weight", ones.clone());
    out.tensors.emplace_back(p + "ln_2.bias", zeros.clone());
    out.tensors.emplace_back(p + "mlp.c_fc.weight", m_cFcW[l]);
    out.tensors.emplace_back(p + "mlp.c_fc.bias", m_cFcB[l]);
    out.tensors.emplace_back(p + "mlp.c_proj.weight", m_mlpProjW[l]);
    out.tensors.emplace_back(p + "mlp.c_proj.bias", zeros.clone());
  }
  out.tensors.emplace_back("transformer.ln_f.weight", ones.clone());
  out.tensors.emplace_back("transformer.ln_f.bias", zeros.clone());
  out.tensors.emplace_back("lm_head.weight", m_lmHead);

  const int V = static_cast<int>(vocabulary().size());
  out.config = {{"architectures", {"GPT2LMHeadModel"}}, {"model_type", "gpt2"}, {"vocab_size", V},
                {"n_positions", L::kCtx}, {"n_ctx", L::kCtx}, {"n_embd", L::kDModel}, {"n_layer", L::kLayers},
                {"n_head", L::kHeads}, {"n_inner", L::kInner}, {"activation_function", "gelu_new"},
                {"resid_pdrop", 0.0}, {"embd_pdrop", 0.0}, {"attn_pdrop", 0.0}, {"layer_norm_epsilon", 1e-5},
                {"initializer_range", 0.02}, {"scale_attn_weights", true}, {"tie_word_embeddings", false},
                {"bos_token_id", 0}, {"eos_token_id", 0}, {"torch_dtype", "float32"}};

  auto headList = [&](auto pred) {
    nlohmann::json arr = nlohmann::json::array();
    for (const auto& r : m_heads)
      if (pred(r)) arr.push_back({r.layer, r.head});
    return arr;
  };
  auto hasRole = [](const HeadRecord& r, const std::string& role) {
    return std::find(r.roles.begin(), r.roles.end(), role) != r.roles.end();
  };
  nlohmann::json heads = nlohmann::json::array();
  for (const auto& r : m_heads) {
    heads.push_back({{"layer", r.layer}, {"head", r.head}, {"roles", r.roles},
                     {"pattern", r.pattern == Pattern::Local ? "local" : r.pattern == Pattern::Global ? "global" : "uniform"}});
  }
  const nlohmann::json ioi = headList([&](const HeadRecord& r) {
    return hasRole(r, "duplicate_token") || hasRole(r, "s_inhibition") || hasRole(r, "mover");
  });
  const nlohmann::json co = headList([&](const HeadRecord& r) {
    return hasRole(r, "previous_token") || hasRole(r, "colored_objects_gatherer") || hasRole(r, "mover");
  });
  out.planted = {
      {"recipe", "default"},
      {"description", "Hand-built GPT-2 with planted sinks, previous-token/duplicate/induction/retrieval heads, "
                      "an IOI-like and a Colored-Objects-like circuit sharing their movers."},
      {"heads", heads},
      {"expected",
       {{"retrieval_heads", headList([&](const HeadRecord& r) { return hasRole(r, "retrieval"); })},
        {"induction_heads", headList([&](const HeadRecord& r) { return hasRole(r, "induction"); })},
        {"previous_token_heads", headList([&](const HeadRecord& r) { return hasRole(r, "previous_token"); })},
        {"duplicate_token_heads", headList([&](const HeadRecord& r) { return hasRole(r, "duplicate_token"); })},
        {"local_heads", headList([](const HeadRecord& r) { return r.pattern == Pattern::Local; })},
        {"global_heads", headList([](const HeadRecord& r) { return r.pattern == Pattern::Global; })},
        {"sink_heads", headList([](const HeadRecord& r) { return r.pattern == Pattern::Global; })},
        {"ioi_circuit", ioi},
        {"colored_objects_circuit", co},
        {"primary_sink", {{"position", 0}, {"window", {kBosSinkLayer, kCollapseLayer}}}},
        {"secondary_sink",
         {{"token", kDelimiter}, {"creation_layer", kSecondaryLayer},
          {"lifetime", kCollapseLayer - kSecondaryLayer}, {"label", "secondary"},
          {"mlp_cosine", 1.0}, {"mlp_norm", kDelimSink * std::sqrt(2.0)}}},
        {"split_quantile", 0.3},
        {"split_prompt_note", "local/global/sink sets hold on text without repeated tokens, names, colours or ';'"}}},
      {"mlps",
       {{{"layer", kBosSinkLayer}, {"role", "BOS massive activation (+100 on the SINK direction)"}},
        {{"layer", kSecondaryLayer}, {"role", "maps ';' onto the BOS direction (+60): secondary sink; BOS +10"}},
        {{"layer", kCollapseLayer}, {"role", "removes both massive activations: the sink window ends"}}}},
  };
  return out;
}

}  // namespace

std::vector<std::string> plantedRecipes() { return {"default"}; }

PlantedWeights buildPlantedWeights(const std::string& recipe) {
  if (recipe != "default")
    throw InputError(fmt::format("unknown planted recipe '{}' (known: default)", recipe));
  return Builder().build();
}

}  // namespace mechscope::planted
