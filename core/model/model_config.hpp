#pragma once
// ModelConfig: one struct for every family, parsed from a Hugging Face config.json by the family's
// table entry (core/model/families/). The forward pass reads only these flags.
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace mechscope {

/// Normalisation layer kind.
enum class NormKind { LayerNorm, RMSNorm };
/// MLP non-linearity.
enum class Activation { GeluNew, Gelu, Silu, Relu };
/// How positions enter the model.
enum class PositionalKind { Learned, Rotary };
/// Rotary frequency scaling (HF `rope_scaling` / `rope_parameters.rope_type`).
enum class RopeScalingKind { None, Linear, Llama3, LongRope, Yarn };

/// Rotary scaling parameters (only those of the kind in use matter).
struct RopeScaling {
  RopeScalingKind kind = RopeScalingKind::None;
  double factor = 1.0;
  double lowFreqFactor = 1.0;
  double highFreqFactor = 4.0;
  int64_t originalMaxPositionEmbeddings = 8192;
  /// LongRope (Phi-3): per-frequency divisors [rotary_dim / 2] of passes whose longest position is
  /// ≤ originalMaxPositionEmbeddings (short) or beyond it (long), as HF picks them per forward.
  std::vector<double> shortFactor, longFactor;
  /// cos and sin are multiplied by this (LongRope's and YaRN's attention factor; 1 otherwise).
  double attentionFactor = 1.0;
  double betaFast = 32.0;  ///< YaRN: dims turning more than this often over the original context keep their frequency
  double betaSlow = 1.0;   ///< YaRN: dims turning less than this often are interpolated by `factor`
  bool truncate = true;    ///< YaRN: round the correction range outwards to whole dims
};

/// How a mixture-of-experts router turns logits into the weights of its top-k experts.
enum class RouterOrder {
  SoftmaxThenTopK,  ///< Mixtral, Qwen-MoE: softmax over all experts, keep the k largest (renormalised or not)
  TopKThenSoftmax   ///< gpt-oss: the k largest logits, softmax over those k
};
/// What one expert computes from its gate and up projections.
enum class ExpertActivation {
  Gated,         ///< act(gate) · up (the config's activation), as the dense gated MLP
  ClampedSwiglu  ///< gpt-oss: gate ≤ limit, up ∈ [−limit, limit], (up + 1) · gate · σ(α · gate)
};

/// Mixture-of-experts MLP of the sparse layers (nExperts == 0: every layer is dense).
struct MoeConfig {
  int nExperts = 0;       ///< routed experts per sparse layer
  int topK = 0;           ///< experts per token
  int dExpert = 0;        ///< hidden size of one expert (moe_intermediate_size)
  RouterOrder order = RouterOrder::SoftmaxThenTopK;
  bool normTopK = false;  ///< SoftmaxThenTopK: renormalise the k kept probabilities to sum 1
  bool routerBias = false;
  bool expertBias = false;  ///< biases on the experts' gate/up and down projections
  ExpertActivation activation = ExpertActivation::Gated;
  double swigluAlpha = 1.702;  ///< ClampedSwiglu: σ(α · gate)
  double swigluLimit = 7.0;    ///< ClampedSwiglu: the clamp
  int dShared = 0;          ///< hidden size of the always-on shared expert (0: none; Qwen2-MoE)
  bool sharedGate = false;  ///< the shared expert's output is scaled by σ(x · w_gate) (Qwen2-MoE)
  /// Per layer: true where the MLP is the mixture (false: the dense MLP of size d_mlp). Empty: none.
  std::vector<bool> sparseLayers;
};

/// Rotary parameters of one kind of layer (Gemma 3: sliding layers have their own theta).
struct LayerRope {
  double theta = 10000.0;
  RopeScaling scaling;
};

/// "layernorm" / "rmsnorm", etc.: names for printing.
std::string toString(NormKind kind);
std::string toString(Activation act);
std::string toString(PositionalKind kind);
std::string toString(RopeScalingKind kind);

/// Architecture hyper-parameters and flags of a loaded model.
struct ModelConfig {
  std::string modelType;  ///< config.json model_type, e.g. "llama"
  int nLayers = 0;
  int dModel = 0;
  int nHeads = 0;
  int nKvHeads = 0;  ///< == nHeads without GQA; 1 for MQA
  int dHead = 0;     ///< may differ from dModel / nHeads (Qwen3)
  int dMlp = 0;
  int dVocab = 0;
  int nCtx = 0;  ///< max positions
  NormKind normKind = NormKind::LayerNorm;
  double normEps = 1e-5;
  Activation activation = Activation::GeluNew;
  bool gatedMlp = false;  ///< SwiGLU-style: act(gate(x)) * up(x)
  PositionalKind positional = PositionalKind::Learned;
  int rotaryDim = 0;  ///< rotated dims per head (partial rotary: < dHead)
  double ropeTheta = 10000.0;
  RopeScaling ropeScaling;
  std::optional<int> slidingWindow;  ///< keys further back than this are masked
  /// Per layer (`layer_types` of Gemma 2/3, gpt-oss): that layer's sliding window, 0 = full attention.
  /// Empty: `slidingWindow` (or none) applies to every layer. Read windows through windowOf().
  std::vector<int> layerWindows;
  /// Rotary of the sliding-window layers when it differs from ropeTheta/ropeScaling (Gemma 3's
  /// rope_parameters "sliding_attention"); unset: every layer uses ropeTheta/ropeScaling.
  std::optional<LayerRope> slidingRope;
  bool parallelAttnMlp = false;      ///< GPT-NeoX: resid + attn(ln1(x)) + mlp(ln2(x))
  bool qkNorm = false;               ///< Qwen3: per-head RMSNorm on q and k before rotary
  bool attnSinks = false;            ///< gpt-oss: a learned per-head logit in every softmax row, with no value
  bool qkNormWhole = false;          ///< with qkNorm: over the whole projection [n_heads·d_head] (OLMo-2), not per head
  bool preNorms = true;              ///< ln1 before attention, ln2 before the MLP (OLMo-2 has neither)
  bool postAttnNorm = false;         ///< ln1_post on the attention output before it joins the residual (Gemma 2/3, OLMo-2)
  bool postMlpNorm = false;          ///< ln2_post on the MLP output before it joins the residual (Gemma 2/3, OLMo-2)
  bool normScaleFp32 = false;        ///< RMSNorm weight applied in fp32 before the cast back (Gemma, OLMo-2)
  double embedScale = 1.0;           ///< embeddings × this, rounded to the compute dtype first (Gemma: √d_model)
  double queryPreAttnScalar = 0.0;   ///< > 0: attention scale is its −½ power instead of d_head's (Gemma)
  double attnSoftcap = 0.0;          ///< > 0: scores → tanh(s / c)·c before the mask (Gemma 2)
  double finalSoftcap = 0.0;         ///< > 0: logits → tanh(l / c)·c (Gemma 2)
  bool attnQkvBias = false;
  bool attnOutBias = false;
  bool mlpBias = false;
  bool normBias = false;  ///< LayerNorm with bias
  bool tiedEmbeddings = false;
  MoeConfig moe;  ///< mixture of experts (moe.nExperts == 0: dense)
  std::optional<int64_t> bosTokenId;
  std::vector<int64_t> eosTokenIds;
  nlohmann::json raw;  ///< the config.json as read

  /// Reads `path` (a config.json), finds the family by model_type and lets it fill the struct.
  /// Missing file, unknown model_type or missing keys → InputError naming config.json and the key.
  static ModelConfig fromJsonFile(const std::filesystem::path& path);
  /// As fromJsonFile, from parsed JSON; `source` names the file in errors.
  static ModelConfig fromJson(const nlohmann::json& json, const std::string& source);
  /// Checks internal consistency (positive sizes, heads divide, rotary dim ≤ d_head).
  void validate(const std::string& source) const;
  /// The sliding window of layer `layer`: 0 means full (causal) attention.
  [[nodiscard]] int windowOf(int layer) const;
  /// Whether layer `layer`'s MLP is the mixture of experts.
  [[nodiscard]] bool isMoeLayer(int layer) const {
    return moe.nExperts > 0 && layer >= 0 && layer < static_cast<int>(moe.sparseLayers.size()) && moe.sparseLayers[static_cast<size_t>(layer)];
  }
  /// The factor of q·k in the scores: queryPreAttnScalar^−½ when set, else d_head^−½.
  [[nodiscard]] double attentionScale() const;
  /// Multi-line human-readable summary ("key: value" lines).
  [[nodiscard]] std::string summary() const;
};

/// Reads keys of a config.json with errors that name the file and the key.
class ConfigReader {
 public:
  ConfigReader(const nlohmann::json& json, std::string source) : m_json(json), m_source(std::move(source)) {}
  /// The first present, non-null key of `keys` as an int; InputError naming them when none is.
  [[nodiscard]] int requireInt(std::initializer_list<const char*> keys) const;
  /// The first present, non-null key as a double, else `fallback`.
  [[nodiscard]] double optDouble(std::initializer_list<const char*> keys, double fallback) const;
  /// The first present, non-null key as an int, else `fallback`.
  [[nodiscard]] std::optional<int64_t> optInt(std::initializer_list<const char*> keys) const;
  /// The first present, non-null key as a bool, else `fallback`.
  [[nodiscard]] bool optBool(std::initializer_list<const char*> keys, bool fallback) const;
  /// The first present, non-null key as a string, else `fallback`.
  [[nodiscard]] std::string optString(std::initializer_list<const char*> keys, const std::string& fallback) const;
  /// The raw JSON.
  [[nodiscard]] const nlohmann::json& json() const { return m_json; }
  /// The file name used in errors.
  [[nodiscard]] const std::string& source() const { return m_source; }
  /// Parses an activation name ("gelu_new", "silu", ...); InputError on others.
  [[nodiscard]] Activation activation(const std::string& name) const;
  /// Fills ropeTheta, rotaryDim and ropeScaling from `rope_parameters` (transformers ≥ 5) or
  /// `rope_theta` + `rope_scaling` (older) + `partial_rotary_factor`/`rotary_pct`.
  void readRope(ModelConfig& cfg, double defaultTheta, double defaultPartial = 1.0) const;
  /// Reads the theta and scaling of one rope_parameters object (`where` names it in errors) for rotary dim
  /// `rotaryDim`; `maxPositions` is max_position_embeddings (LongRope's default factor).
  [[nodiscard]] LayerRope ropeOf(const nlohmann::json& params, const std::string& where, int rotaryDim, int maxPositions,
                                 double defaultTheta) const;
  /// Fills bosTokenId and eosTokenIds (eos may be an int or a list).
  void readSpecialTokens(ModelConfig& cfg) const;

 private:
  const nlohmann::json* find(std::initializer_list<const char*> keys) const;
  const nlohmann::json& m_json;
  std::string m_source;
};

}  // namespace mechscope
