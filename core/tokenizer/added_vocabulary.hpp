#pragma once
// Added and special tokens: matched (leftmost-longest) before the model, on the raw text for
// `normalized: false` tokens and on the normalized pieces for the others, honouring lstrip / rstrip /
// single_word, as tokenizers' AddedVocabulary::extract_and_normalize.
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "core/tokenizer/components.hpp"

namespace mechscope::tok {

/// One entry of tokenizer.json's "added_tokens".
struct AddedToken {
  int64_t id = 0;
  std::string content;
  bool singleWord = false;
  bool lstrip = false;
  bool rstrip = false;
  bool normalized = true;
  bool special = false;
};

/// The added tokens and their two matchers.
class AddedVocabulary {
 public:
  AddedVocabulary() = default;
  /// Build the matchers; `normalizer` (may be null) normalizes the patterns of `normalized` tokens.
  AddedVocabulary(std::vector<AddedToken> tokens, const Normalizer* normalizer);

  /// Split out added tokens, normalizing the rest with `normalizer` (may be null).
  void extractAndNormalize(PreTokenized& p, const Normalizer* normalizer) const;
  /// The added token with this id, if any.
  const AddedToken* byId(int64_t id) const;
  /// The id of an added token's content, if any.
  std::optional<int64_t> idOf(std::string_view content) const;
  /// Whether `content` is a special added token.
  bool isSpecial(std::string_view content) const;
  /// All added tokens.
  const std::vector<AddedToken>& tokens() const { return m_tokens; }

 private:
  struct Trie {
    struct Node {
      std::vector<std::pair<unsigned char, int>> children;
      int token = -1;  // index into m_tokens
    };
    std::vector<Node> nodes{Node{}};
    bool first[256] = {};
    void insert(std::string_view key, int token);
    bool empty() const { return nodes.size() == 1; }
  };
  struct Match {
    int token;  // index into m_tokens; -1 for text between matches
    size_t begin, end;
  };
  std::vector<Match> findMatches(std::string_view s, const Trie& trie) const;
  void splitWith(PreTokenized& p, const Trie& trie, const Normalizer* normalizer) const;

  std::vector<AddedToken> m_tokens;
  std::unordered_map<int64_t, size_t> m_byId;
  std::unordered_map<std::string, size_t> m_byContent;
  Trie m_raw;
  Trie m_normalized;
};

}  // namespace mechscope::tok
