#pragma once
// The pipeline stages of a tokenizer.json: normalizers, pre-tokenizers, post-processors and decoders,
// each built from its JSON object by a factory that throws InputError naming the component.
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "core/tokenizer/normalized_string.hpp"

namespace mechscope::tok {

/// Changes a NormalizedString in place (NFC, Lowercase, Replace, ...).
class Normalizer {
 public:
  virtual ~Normalizer() = default;
  /// Normalize `s`, keeping its alignments.
  virtual void normalize(NormalizedString& s) const = 0;
};

/// Cuts the splits of a PreTokenized further (ByteLevel, Split, Metaspace, ...).
class PreTokenizer {
 public:
  virtual ~PreTokenizer() = default;
  /// Split (and possibly transform) every untokenized split.
  virtual void preTokenize(PreTokenized& p) const = 0;
};

/// An encoding under construction: ids, token strings and code-point offsets.
struct RawEncoding {
  std::vector<int64_t> ids;
  std::vector<std::string> tokens;
  std::vector<std::pair<size_t, size_t>> offsets;
};

/// Adds special tokens / trims offsets after the model (TemplateProcessing, ByteLevel, ...).
class PostProcessor {
 public:
  virtual ~PostProcessor() = default;
  /// Process `e` in place; `addSpecialTokens` as in `encode(..., add_special_tokens)`.
  virtual void process(RawEncoding& e, bool addSpecialTokens) const = 0;
  /// The special-token ids this processor puts before / after a single sequence.
  virtual std::pair<std::vector<int64_t>, std::vector<int64_t>> specialIds() const { return {}; }
};

/// Turns token strings back into text pieces (ByteLevel, Metaspace, ByteFallback, ...).
class Decoder {
 public:
  virtual ~Decoder() = default;
  /// One decode_chain step.
  virtual std::vector<std::string> decodeChain(std::vector<std::string> tokens) const = 0;
};

/// Build a normalizer from its JSON; `where` names it in errors (e.g. "x.json: normalizer").
std::unique_ptr<Normalizer> makeNormalizer(const nlohmann::json& j, const std::string& where);
/// Build a pre-tokenizer from its JSON.
std::unique_ptr<PreTokenizer> makePreTokenizer(const nlohmann::json& j, const std::string& where);
/// Build a post-processor from its JSON.
std::unique_ptr<PostProcessor> makePostProcessor(const nlohmann::json& j, const std::string& where);
/// Build a decoder from its JSON.
std::unique_ptr<Decoder> makeDecoder(const nlohmann::json& j, const std::string& where);

/// The JSON object's "type", or an InputError naming `where`.
std::string componentType(const nlohmann::json& j, const std::string& where);
/// A Split/Replace pattern object ({"String": s} or {"Regex": r}).
Pattern makePattern(const nlohmann::json& j, const std::string& where);

/// ByteLevel post-processing offset trimming (leading/trailing 'Ġ' or whitespace).
void trimByteLevelOffsets(RawEncoding& e, bool addPrefixSpace);

}  // namespace mechscope::tok
