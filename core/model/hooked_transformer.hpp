#pragma once
// HookedTransformer: a Hugging Face checkpoint run by our own forward pass, with every
// TransformerLens hook point readable and writable (see hookNames()).
//
// Hook layouts (TransformerLens):
//   hook_embed, hook_pos_embed, blocks.{l}.hook_resid_pre/mid/post, hook_attn_out, hook_mlp_out,
//   ln1/ln2.hook_normalized, ln_final.hook_normalized,
//   ln1_post/ln2_post.hook_normalized (post-norm families)    [batch, pos, d_model]
//   attn.hook_q, attn.hook_rot_q, attn.hook_z                  [batch, pos, n_heads, d_head]
//   attn.hook_k/v, attn.hook_rot_k                             [batch, pos, n_kv_heads, d_head]
//   attn.hook_attn_scores (masked with -inf), attn.hook_pattern [batch, n_heads, query, key]
//   attn.hook_result (only computed when hooked)               [batch, pos, n_heads, d_model]
//   mlp.hook_pre (gate pre-activation when gated), mlp.hook_pre_linear (gated only), mlp.hook_post
//                                                              [batch, pos, d_mlp]
//   unembed.hook_logits                                        [batch, pos, d_vocab]
//   attn.hook_lse (mechscope's, not TransformerLens'; read-only) [batch, n_heads, query] fp32: the fused kernel's row
//     log-sum-exps of the scaled scores, fired only where cuDNN gives them (CUDA, bf16/fp16, plain causal, LibTorch
//     ≥ 2.6); hooking it runs cuDNN's kernel for the layer. Not in hookNames() (every-hook caches leave it out).
// hook_q/k are taken after qk-norm (Qwen3) and before rotary; hook_rot_q/k exist for rotary models;
// hook_resid_mid does not exist for parallel-residual models (GPT-NeoX), as in TransformerLens.
// With post-norms (Gemma 2/3, OLMo-2) hook_attn_out / hook_mlp_out are after ln1_post / ln2_post: what
// joins the residual (hook_result stays before ln1_post); without pre-norms (OLMo-2) there is no
// ln1/ln2.hook_normalized. hook_embed includes Gemma's √d_model scale; hook_attn_scores is after Gemma 2's
// soft-cap; unembed.hook_logits after its final soft-cap.
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/common/run_context.hpp"
#include "core/common/tensor.hpp"
#include "core/model/activation_cache.hpp"
#include "core/model/device_plan.hpp"
#include "core/model/hooks.hpp"
#include "core/model/model_config.hpp"
#include "core/model/model_weights.hpp"

namespace mechscope {

/// Where and in which precision to run.
struct LoadOptions {
  /// "cpu", "cuda", "cuda:N"; a comma list ("cuda:0,cuda:1") splits the blocks over those devices in order;
  /// "auto": cuda:0 when the weights fit it, else every visible GPU (the CPU without one). core/model/device_plan.hpp
  std::string device = "cpu";
  std::string dtype = "fp32";  ///< "fp32", "bf16" or "fp16" (fp16 is refused on CPU)
};

/// Parses "fp32"/"float32", "bf16"/"bfloat16", "fp16"/"float16", "fp64" (CPU reference runs); InputError otherwise.
at::ScalarType parseDtype(const std::string& name);
/// "fp32", "bf16", "fp16".
std::string dtypeName(at::ScalarType type);

/// Which attention implementation to use.
enum class AttentionPath {
  Auto,      ///< no attention-internal hook (scores/pattern) active: fused on LibTorch ≥ 2, else chunked when
             ///< one layer's scores exceed one tile (16 MB CPU, 256 MB CUDA), else explicit
  Explicit,  ///< matmul + fp32 softmax: every site hookable
  Fused,     ///< scaled_dot_product_attention where possible (LibTorch ≥ 2), else explicit
  Chunked    ///< query tiles of fp32 softmax (memory O(tile·n), never [batch, head, n, n]); explicit where
             ///< an attention-internal hook is active
};

/// One layer's attention maps as attn.hook_attn_scores and attn.hook_pattern show them.
struct AttentionMaps {
  at::Tensor scores;   ///< [batch, head, query, key] fp32, −inf where masked
  at::Tensor pattern;  ///< [batch, head, query, key] fp32
};

/// Options of one forward pass.
struct ForwardOptions {
  at::Tensor attentionMask;  ///< [batch, pos] 1 = token, 0 = padding (left or right); optional
  AttentionPath path = AttentionPath::Auto;
  bool logitsLastOnly = false;  ///< unembed only the last position: logits [batch, 1, vocab]
  int stopAtLayer = -1;         ///< run only blocks < stopAtLayer and return the residual (no logits)
  /// Each block computes only its queries, keys and values (every hook up to hook_rot_q/k fires) and hands its
  /// resid_pre on unchanged; no attention, MLP or logits. For probe-only passes whose hook_resid_pre hooks put back
  /// the residuals of an earlier pass of the same tokens (analysis/common/attention_stats.hpp, residPre).
  bool queriesAndKeysOnly = false;
  /// Called with the whole logits tensor [batch, pos, vocab] (fp32, on the model's device) each time the
  /// unembedding has made the logits of positions [posBegin, posEnd) final, in order from 0 to pos, before
  /// unembed.hook_logits fires on the whole tensor: a cache writes those rows while the next ones are
  /// computed (store::CacheWriter::writeLogitRows). On the CPU, long inputs are unembedded in blocks of
  /// positions whether or not this is set, so it changes no logit; one call for the whole tensor when it is one
  /// block, on a GPU, or with logitsLastOnly (its one position).
  std::function<void(const at::Tensor& logits, int64_t posBegin, int64_t posEnd)> onLogitRows;
  /// When set, each layer whose attn.hook_attn_scores and attn.hook_pattern are both unhooked still takes its
  /// usual attention path (LibTorch's fused kernel where there is one, which never forms the maps) and hands
  /// this callback a function that forms the two maps later, on any thread, from the pass's queries and keys:
  /// the values those hooks would have seen, by the same arithmetic, while the pass's own output stays the
  /// unhooked pass's, bit for bit. A cache forms them on a background thread while the forward goes on
  /// (store::CacheWriter::writeDeferredMaps). Not called under autograd.
  /// `mapBytes`: the bytes of one of the two maps (fp32 [batch, head, query, key]).
  std::function<void(int layer, int64_t mapBytes, std::function<AttentionMaps()> formMaps)> onDeferredMaps;
  /// Positions per unembedding block on the CPU; 0: about 64 MiB of fp32 logits per block (at least 16
  /// positions), evened out. A different size may change the logits in their last bits (fewer rows per product).
  int64_t logitBlockPositions = 0;
};

/// What a forward pass returns.
struct ForwardResult {
  at::Tensor logits;          ///< [batch, pos, vocab] fp32 (undefined with stopAtLayer)
  at::Tensor residual;        ///< [batch, pos, d_model]: resid_pre of block stopAtLayer (only then)
  std::string attentionPath;  ///< "explicit", "fused", "chunked" or "mixed" (per layer); "none" with queriesAndKeysOnly
};

/// Keys and values of earlier positions, for incremental decoding.
struct KVCache {
  std::vector<at::Tensor> keys;    ///< per layer [batch, past, n_kv_heads, d_head], after rotary
  std::vector<at::Tensor> values;  ///< per layer [batch, past, n_kv_heads, d_head]
  at::Tensor attentionMask;        ///< [batch, past] of the cached positions (undefined: all 1)
  int64_t length = 0;              ///< cached positions
  bool longRope = false;           ///< LongRope: the cached keys were rotated with the long factors
};

/// A loaded model with a hookable forward pass.
class HookedTransformer {
 public:
  /// Loads a Hugging Face model folder (config.json + safetensors). Lazy and bounded: on CPU the
  /// weights are views of the memory-mapped files when the stored dtype is the compute dtype.
  static std::unique_ptr<HookedTransformer> load(const std::filesystem::path& folder, const LoadOptions& options = {});
  /// Builds a model from a config and weights already on `device` in `dtype` (tests, synthetic models).
  HookedTransformer(ModelConfig config, ModelWeights weights, at::Device device, at::ScalarType dtype,
                    std::filesystem::path folder = {});
  /// Builds a model whose weights already lie where `plan` says (placeWeights), blocks possibly on several devices.
  HookedTransformer(ModelConfig config, ModelWeights weights, DevicePlan plan, at::ScalarType dtype,
                    std::filesystem::path folder = {});
  ~HookedTransformer();

  /// The parsed config.
  [[nodiscard]] const ModelConfig& config() const { return m_config; }
  /// The canonical weights.
  [[nodiscard]] const ModelWeights& weights() const { return m_weights; }
  /// Every hook point name in forward order.
  [[nodiscard]] std::vector<std::string> hookNames() const;
  /// Number of distinct parameters (tied embeddings counted once).
  [[nodiscard]] int64_t parameterCount() const;
  /// The folder loaded from (empty for synthetic models).
  [[nodiscard]] const std::filesystem::path& folder() const { return m_folder; }
  /// The home device: embeddings, unembedding, the tensors hooks see and analyses work on (the only
  /// device unless the blocks are split; hooks of blocks elsewhere see their activations moved here).
  [[nodiscard]] at::Device device() const { return m_plan.home; }
  /// The device block `layer` runs on.
  [[nodiscard]] at::Device layerDevice(int layer) const { return m_plan.layers.at(static_cast<size_t>(layer)); }
  /// Where every part lives.
  [[nodiscard]] const DevicePlan& devicePlan() const { return m_plan; }
  /// "cuda:0", or "cuda:0,cuda:1" when the blocks are split: what provenance records.
  [[nodiscard]] std::string deviceLabel() const { return m_plan.label(); }
  /// The compute dtype.
  [[nodiscard]] at::ScalarType dtype() const { return m_dtype; }
  /// A cheap fingerprint of the checkpoint: FNV-1a over file names, sizes and header bytes (hex).
  [[nodiscard]] const std::string& weightsHash() const { return m_weightsHash; }

  /// Runs the model on `tokens` [batch, pos] int64 with optional hooks (applied only for this call).
  ForwardResult forward(const at::Tensor& tokens, const ForwardOptions& opts = {}, const HookSet* hooks = nullptr,
                        const RunContext* ctx = nullptr) const;
  /// Continues from `resid` [batch, pos, d_model] = blocks.{layer}.hook_resid_pre (shared-prefix
  /// patching); `tokens` only supply the shape (positions come from opts.attentionMask or 0..pos-1).
  ForwardResult forwardFrom(int layer, const at::Tensor& resid, const ForwardOptions& opts = {},
                            const HookSet* hooks = nullptr, const RunContext* ctx = nullptr) const;
  /// One incremental step: `tokens` [batch, new] follow the `cache.length` cached positions; the
  /// cache is extended. `step` is passed to hooks (HookContext::step). opts.attentionMask, when
  /// given, covers only the new positions.
  ForwardResult forwardCached(const at::Tensor& tokens, KVCache& cache, int step, const ForwardOptions& opts = {},
                              const HookSet* hooks = nullptr, const RunContext* ctx = nullptr) const;
  /// Runs forward and caches every hook whose name matches one of `nameGlobs` (moved to `device`,
  /// default the model's). `result` receives the logits when given; `hooks` run too (after caching).
  ActivationCache runWithCache(const at::Tensor& tokens, const std::vector<std::string>& nameGlobs,
                               const ForwardOptions& opts = {}, std::optional<at::Device> device = {},
                               ForwardResult* result = nullptr, const HookSet* hooks = nullptr,
                               const RunContext* ctx = nullptr) const;
  /// Checks a token batch: 2-D integer, ids in [0, vocab), length ≤ n_ctx; returns it as int64 on the
  /// model's device. InputError names the offending id / length.
  [[nodiscard]] at::Tensor checkTokens(const at::Tensor& tokens, int64_t past = 0) const;

 private:
  struct Impl;
  ModelConfig m_config;
  ModelWeights m_weights;
  DevicePlan m_plan;
  at::ScalarType m_dtype;
  std::filesystem::path m_folder;
  std::string m_weightsHash;
  std::unique_ptr<Impl> m_impl;
  friend struct ForwardPass;
};

}  // namespace mechscope
