#pragma once
// Pieces that the decoder families' table entries share: the config's sizes, the RMSNorm/gated/rotary
// block, and the HF tensor names of embeddings, attention projections, q/k norms and gated MLPs. Each
// family file composes them with its own peculiarities (fused projections, post-norms, 1 + w scales).
#include <functional>
#include <initializer_list>
#include <string>

#include "core/model/family_spec.hpp"

namespace mechscope::families {

/// Config defaults of the size keys (0: the key is required). head_dim and num_key_value_heads are never
/// required: they fall back to `dHead` / `kvHeads` when set, else d_model / n_heads and n_heads.
struct DecoderShapeDefaults {
  int layers = 0, dModel = 0, dMlp = 0, heads = 0, kvHeads = 0, vocab = 0, ctx = 0, dHead = 0;
};

/// Reads the sizes: layers, d_model, heads, kv heads, head_dim, intermediate_size, vocab, context.
void parseDecoderShape(const ConfigReader& r, ModelConfig& c, const DecoderShapeDefaults& d = {});
/// RMSNorm (`rms_norm_eps`, default 1e-6), the activation named by the first of `actKeys` (else
/// `actDefault`), a gated MLP and rotary positions.
void parseRmsGatedRotary(const ConfigReader& r, ModelConfig& c, std::initializer_list<const char*> actKeys,
                         const char* actDefault);

/// Reads a norm weight of `n` elements as the family applies it (as stored, or Gemma's 1 + w).
using NormReader = std::function<at::Tensor(const WeightSource& s, const std::string& name, int64_t n)>;
/// Reads one decoder layer given its tensor prefix "{p}layers.{l}." and its index.
using LayerReader = std::function<LayerWeights(const std::string& b, int layer)>;

/// The norm weight as stored.
at::Tensor plainNorm(const WeightSource& s, const std::string& name, int64_t n);
/// "model." when the checkpoint nests the decoder under it (…ForCausalLM), else "" (a bare …Model).
std::string decoderPrefix(const WeightSource& s);
/// "{p}embed_tokens", every layer through `layer`, the final norm "{p}norm" and "lm_head" unless tied.
ModelWeights loadDecoderStack(const WeightSource& s, const ModelConfig& c, const std::string& p, const LayerReader& layer,
                              const NormReader& norm = plainNorm);

/// Separate "{b}self_attn.{q,k,v}_proj" weights, with their biases when c.attnQkvBias.
void loadQkvProjections(const WeightSource& s, const ModelConfig& c, const std::string& b, LayerWeights& L);
/// "{b}self_attn.o_proj" weight, with its bias when c.attnOutBias.
void loadOutProjection(const WeightSource& s, const ModelConfig& c, const std::string& b, LayerWeights& L);
/// Separate q/k/v projections, then o_proj.
void loadAttentionProjections(const WeightSource& s, const ModelConfig& c, const std::string& b, LayerWeights& L);
/// "{b}self_attn.{q,k}_norm" weights of `nq` and `nk` elements (d_head per head, or the whole projection).
void loadQkNorms(const WeightSource& s, const std::string& b, int64_t nq, int64_t nk, LayerWeights& L,
                 const NormReader& norm = plainNorm);
/// "{b}mlp.{gate,up}_proj" [d_mlp, d_model] and "{b}mlp.down_proj", with their biases when c.mlpBias.
void loadGatedMlp(const WeightSource& s, const ModelConfig& c, const std::string& b, LayerWeights& L);

}  // namespace mechscope::families
