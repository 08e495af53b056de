#pragma once
// Hugging Face tokenizer.json in plain C++ (no LibTorch): normalizers, pre-tokenizers, BPE, added and
// special tokens, post-processors, decoders and code-point offsets, bit-exact with `tokenizers`.
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace mechscope {

/// The result of encoding one text: token ids, their strings and their spans in the original text.
struct Encoding {
  std::vector<int64_t> ids;                           ///< [n_tokens] token ids
  std::vector<std::string> tokens;                    ///< [n_tokens] vocabulary strings (raw, e.g. "Ġthe")
  std::vector<std::pair<size_t, size_t>> offsets;     ///< [n_tokens] code-point spans [begin, end) in the original text
};

/// A tokenizer loaded from a Hugging Face `tokenizer.json`; encode/decode identical to `tokenizers`.
/// Cheap to move; copies share the loaded (immutable) state. Thread-safe for concurrent encode/decode.
class Tokenizer {
 public:
  /// Load `tokenizer.json`, or `<folder>/tokenizer.json` (+ `tokenizer_config.json` when present).
  /// Throws InputError naming the file and the component on failure.
  static Tokenizer fromFile(const std::filesystem::path& tokenizerJsonOrModelFolder);
  /// Parse the text of a tokenizer.json; `sourceName` names it in error messages.
  static Tokenizer fromJson(const std::string& jsonText, const std::string& sourceName);

  /// Longest text encode() accepts (16 MiB, ~4M tokens: beyond any context length; the encoder's
  /// working memory is ~50 bytes per input byte). Longer texts get an InputError saying so.
  static constexpr std::size_t kMaxInputBytes = std::size_t{16} << 20;

  /// Encode `text` (UTF-8); with `addSpecialTokens` the post-processor adds BOS/EOS etc.
  /// Throws InputError for texts over kMaxInputBytes.
  Encoding encode(std::string_view text, bool addSpecialTokens = false) const;
  /// Decode ids back to text as `tokenizers`' decode does (optionally dropping special tokens).
  std::string decode(const std::vector<int64_t>& ids, bool skipSpecialTokens = false) const;
  /// A readable label for plots: 'Ġ'→'␣', 'Ċ'→'↵', '▁'→'␣', byte tokens <0x0A> → '↵'; always valid UTF-8.
  std::string displayToken(int64_t id) const;
  /// The id of a vocabulary or added token string, if any.
  std::optional<int64_t> tokenToId(std::string_view token) const;
  /// The vocabulary string of an id ("" when out of range).
  std::string idToToken(int64_t id) const;
  /// Number of ids (model vocabulary plus added tokens; max id + 1).
  int64_t vocabSize() const;
  /// The beginning-of-sequence id (post-processor / tokenizer_config.json), if the tokenizer has one.
  std::optional<int64_t> bosId() const;
  /// The end-of-sequence id (post-processor / tokenizer_config.json), if the tokenizer has one.
  std::optional<int64_t> eosId() const;
  /// Whether decode() restores text: tokenizer.json has a decoder, or its vocabulary holds plain words
  /// (no byte-level 'Ġ' or metaspace '▁' markers) that decode() joins with spaces, as `tokenizers` does.
  bool decodesText() const;
  /// Components present in the file that are not supported (empty: unsupported ones throw at load).
  std::vector<std::string> unsupportedComponents() const;

  /// Internal state (defined in tokenizer_impl.hpp).
  struct Impl;

 private:
  explicit Tokenizer(std::shared_ptr<const Impl> impl);
  std::shared_ptr<const Impl> m_impl;
};

/// Indices of the tokens whose offsets overlap the code-point span [begin, end) (empty tokens inside it count).
std::vector<size_t> tokensInCharSpan(const Encoding& encoding, size_t begin, size_t end);

}  // namespace mechscope
