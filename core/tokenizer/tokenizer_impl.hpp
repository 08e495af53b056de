#pragma once
// Tokenizer::Impl: the loaded pipeline (internal to core/tokenizer).
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/tokenizer/added_vocabulary.hpp"
#include "core/tokenizer/bpe_model.hpp"
#include "core/tokenizer/components.hpp"
#include "core/tokenizer/tokenizer.hpp"

namespace mechscope {

/// How vocabulary strings encode bytes, for displayToken().
enum class VocabStyle { Plain, ByteLevel, Metaspace };

struct Tokenizer::Impl {
  std::string source;
  std::unique_ptr<tok::Normalizer> normalizer;
  std::unique_ptr<tok::PreTokenizer> preTokenizer;
  std::unique_ptr<tok::BpeModel> model;
  std::unique_ptr<tok::PostProcessor> postProcessor;
  std::unique_ptr<tok::Decoder> decoder;
  tok::AddedVocabulary added;
  std::optional<int64_t> bos;
  std::optional<int64_t> eos;
  std::vector<std::string> unsupported;
  VocabStyle style = VocabStyle::Plain;
  std::string metaspaceChar = "\xE2\x96\x81";  // ▁

  /// The token string of `id` (added token content first), or nullptr.
  const std::string* tokenString(int64_t id) const {
    if (const auto* a = added.byId(id)) return &a->content;
    return model->idToToken(id);
  }
};

}  // namespace mechscope
