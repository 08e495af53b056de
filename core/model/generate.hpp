#pragma once
// Autoregressive decoding with a KV cache: greedy or sampled, stop tokens, max new tokens, with
// hooks firing at every step (HookContext::step: -1 for the prompt, s ≥ 0 for the forward that
// feeds generated token s). At a decode step hook_pattern is [batch, head, 1, n_keys].
#include <cstdint>
#include <string>
#include <vector>

#include "core/common/run_context.hpp"
#include "core/model/hooked_transformer.hpp"

namespace mechscope {

/// Decoding settings.
struct GenerateOptions {
  int maxNewTokens = 32;
  bool greedy = true;        ///< argmax; otherwise sample with the settings below
  double temperature = 1.0;  ///< > 0
  int topK = 0;              ///< 0: no top-k filter
  double topP = 1.0;         ///< nucleus mass in (0, 1]
  uint64_t seed = 0;         ///< sampling seed (the sampler is device-independent)
  std::vector<int64_t> stopTokens;  ///< stop after emitting one of these (it is kept in the output)
  bool useKvCache = true;    ///< false: recompute the whole sequence every step (reference)
  AttentionPath path = AttentionPath::Auto;
};

/// What generate() returns.
struct GenerateResult {
  std::vector<int64_t> tokens;     ///< prompt followed by the generated tokens
  std::vector<int64_t> generated;  ///< the generated tokens only
  std::string stopReason;          ///< "stop_token", "max_new_tokens" or "context"
  std::string attentionPath;       ///< of the last forward
};

/// Generates from `prompt` (one sequence). Throws InputError on an empty prompt, bad ids or a prompt
/// that does not fit the context; stops early (stopReason "context") when the context is full.
GenerateResult generate(const HookedTransformer& model, const std::vector<int64_t>& prompt, const GenerateOptions& options,
                        const HookSet* hooks = nullptr, const RunContext* ctx = nullptr);

/// Picks the next token from fp32 logits [vocab] on CPU (greedy or sampled per `options`).
int64_t pickToken(const at::Tensor& logits, const GenerateOptions& options, uint64_t& rngState);

}  // namespace mechscope
