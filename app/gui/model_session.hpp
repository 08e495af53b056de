#pragma once
// ModelSession: a loaded model with its tokenizer and model card, plus the tensor-side helpers the
// GUI's jobs call (tokenize, attention patterns, memory estimate). Runs on the job runner's thread;
// what it returns to the GUI are plain values (no tensors reach the views).
#include <QString>
#include <QStringList>

#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <utility>
#include <vector>

#include "core/common/run_context.hpp"
#include "core/model/hooked_transformer.hpp"
#include "core/tokenizer/tokenizer.hpp"

namespace mechscope::gui {

/// What the model-card panel shows.
struct ModelCard {
  QString folder, family, device, dtype;
  int layers = 0, heads = 0, kvHeads = 0, dModel = 0, dHead = 0, dMlp = 0, vocab = 0, nCtx = 0;
  qint64 parameters = 0;
  QStringList hooks;  ///< every hook point name in forward order
  bool planted = false;
};

/// A prompt's tokens as the token strip shows them.
struct PromptTokens {
  std::vector<int64_t> ids;                    ///< [pos] with BOS when the tokenizer adds one
  QStringList display;                         ///< [pos] readable labels
  std::vector<std::pair<int, int>> offsets;    ///< [pos] code-point spans in the prompt
};

/// Every head's attention pattern of one prompt, as plain floats.
struct AttentionPatterns {
  int layers = 0, heads = 0, positions = 0;
  std::vector<std::vector<float>> perLayer;  ///< per layer: [heads, query, key] row-major
  QStringList labels;                        ///< [positions] token labels
  /// One head's [query, key] matrix (copy).
  std::vector<float> head(int layer, int head) const;
};

/// A model loaded for the GUI.
struct ModelSession {
  std::shared_ptr<const HookedTransformer> model;
  std::optional<Tokenizer> tokenizer;
  ModelCard card;
};

/// Loads a Hugging Face folder (device/dtype as in LoadOptions). Throws InputError with a message that
/// says what to do for a missing folder, a folder without config.json, a broken checkpoint.
std::shared_ptr<ModelSession> loadModelSession(const std::filesystem::path& folder, const LoadOptions& options,
                                               const RunContext& ctx);

/// Tokenizes `text` with the session's tokenizer (special tokens added, BOS prepended when the
/// tokenizer does not add it). InputError when the model has no tokenizer.json or the text is empty.
PromptTokens tokenizePrompt(const ModelSession& session, const QString& text);

/// Bytes the GUI holds for all attention patterns of `positions` tokens (fp32 [layers, heads, pos, pos]).
qint64 patternBytes(const ModelCard& card, qint64 positions);
/// Human-readable byte count ("1.2 GB").
QString formatBytes(qint64 bytes);

/// Runs the model on `tokens` and returns every layer's pattern; progress per layer, cancellable.
AttentionPatterns computePatterns(const ModelSession& session, const PromptTokens& tokens, const RunContext& ctx);

/// [1, pos] int64 tensor of ids.
at::Tensor tokenTensor(const std::vector<int64_t>& ids);

}  // namespace mechscope::gui
