#pragma once
// Byte-pair-encoding model of tokenizer.json ("type": "BPE"): vocab, ranked merges (both file formats),
// byte_fallback, ignore_merges, unk_token (+ fuse_unk), continuing_subword_prefix, end_of_word_suffix.
// The same class serves "WordLevel" models (whole-word vocabulary lookup with unk, no merges).
#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "core/tokenizer/normalized_string.hpp"

namespace mechscope::tok {

/// Transparent string hash so maps keyed by std::string accept std::string_view lookups.
struct StringHash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const noexcept { return std::hash<std::string_view>{}(s); }
};
/// A string → id map with string_view lookup.
using VocabMap = std::unordered_map<std::string, int64_t, StringHash, std::equal_to<>>;

/// The BPE model; tokenize() is thread-safe (the word cache is locked).
class BpeModel {
 public:
  /// Build from the "model" object; throws InputError naming `where` (merges with unknown tokens, ...).
  BpeModel(const nlohmann::json& model, const std::string& where);

  /// Tokens of one pre-tokenized word; offsets are bytes within `word`.
  std::vector<Token> tokenize(std::string_view word) const;
  /// Vocabulary id of `token`.
  std::optional<int64_t> tokenToId(std::string_view token) const;
  /// Vocabulary string of `id` (nullptr when absent).
  const std::string* idToToken(int64_t id) const;
  /// Largest id + 1.
  int64_t idBound() const { return static_cast<int64_t>(m_vocabR.size()); }
  /// Whether the model falls back to <0xNN> byte tokens.
  bool byteFallback() const { return m_byteFallback; }
  /// Whether the BPE dropout field is set (ignored: encoding is deterministic).
  bool hasDropout() const { return m_hasDropout; }

 private:
  struct Symbol {
    int64_t id;
    uint32_t len;  // bytes in the word (0 = merged away)
    int32_t prev;
    int32_t next;
  };
  std::vector<std::pair<int64_t, uint32_t>> mergeWord(std::string_view word) const;

  VocabMap m_vocab;
  std::vector<std::string> m_vocabR;
  std::vector<bool> m_hasId;
  std::unordered_map<uint64_t, std::pair<uint32_t, int64_t>> m_merges;  // (a, b) → (rank, merged id)
  std::optional<std::string> m_unk;
  std::optional<std::string> m_prefix;
  std::optional<std::string> m_suffix;
  bool m_byteFallback = false;
  bool m_fuseUnk = false;
  bool m_ignoreMerges = false;
  bool m_hasDropout = false;
  bool m_wordLevel = false;
  std::string m_byteTokens[256];
  std::optional<int64_t> m_byteIds[256];

  mutable std::mutex m_cacheMutex;
  mutable std::unordered_map<std::string, std::vector<std::pair<int64_t, uint32_t>>, StringHash, std::equal_to<>> m_cache;
};

}  // namespace mechscope::tok
