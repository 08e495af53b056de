#include "core/tokenizer/added_vocabulary.hpp"

#include <algorithm>

#include "core/tokenizer/unicode_utils.hpp"

namespace mechscope::tok {

void AddedVocabulary::Trie::insert(std::string_view key, int token) {
  if (key.empty()) return;
  int node = 0;
  for (const char ch : key) {
    const auto c = static_cast<unsigned char>(ch);
    int child = -1;
    for (const auto& [k, n] : nodes[static_cast<size_t>(node)].children)
      if (k == c) child = n;
    if (child < 0) {
      child = static_cast<int>(nodes.size());
      nodes[static_cast<size_t>(node)].children.emplace_back(c, child);
      nodes.emplace_back();
    }
    node = child;
  }
  first[static_cast<unsigned char>(key[0])] = true;
  if (nodes[static_cast<size_t>(node)].token < 0) nodes[static_cast<size_t>(node)].token = token;  // first added wins
}

AddedVocabulary::AddedVocabulary(std::vector<AddedToken> tokens, const Normalizer* normalizer) : m_tokens(std::move(tokens)) {
  for (size_t i = 0; i < m_tokens.size(); ++i) {
    m_byId[m_tokens[i].id] = i;
    m_byContent[m_tokens[i].content] = i;
  }
  // Matching order as tokenizers: special tokens first, then the others; split by `normalized`.
  for (int pass = 0; pass < 2; ++pass) {
    for (size_t i = 0; i < m_tokens.size(); ++i) {
      const auto& t = m_tokens[i];
      if (t.special != (pass == 0) || t.content.empty()) continue;
      if (!t.normalized) {
        m_raw.insert(t.content, static_cast<int>(i));
      } else {
        NormalizedString n(t.content);
        if (normalizer) normalizer->normalize(n);
        m_normalized.insert(n.get(), static_cast<int>(i));
      }
    }
  }
}

const AddedToken* AddedVocabulary::byId(int64_t id) const {
  const auto it = m_byId.find(id);
  return it == m_byId.end() ? nullptr : &m_tokens[it->second];
}

std::optional<int64_t> AddedVocabulary::idOf(std::string_view content) const {
  const auto it = m_byContent.find(std::string(content));
  if (it == m_byContent.end()) return std::nullopt;
  return m_tokens[it->second].id;
}

bool AddedVocabulary::isSpecial(std::string_view content) const {
  const auto it = m_byContent.find(std::string(content));
  return it != m_byContent.end() && m_tokens[it->second].special;
}

namespace {
char32_t lastChar(std::string_view s) {
  size_t b = s.size();
  while (b > 0 && (static_cast<unsigned char>(s[b - 1]) & 0xC0) == 0x80) --b;
  if (b == 0) return 0;
  size_t len = 0;
  return decodeUtf8(s, b - 1, len);
}
// Start of the run of whitespace that ends `s` (regex \s*$).
size_t trailingSpaceStart(std::string_view s) {
  size_t pos = s.size();
  while (pos > 0) {
    size_t b = pos - 1;
    while (b > 0 && (static_cast<unsigned char>(s[b]) & 0xC0) == 0x80) --b;
    size_t len = 0;
    if (!isWhitespace(decodeUtf8(s, b, len))) break;
    pos = b;
  }
  return pos;
}
// Length of the run of whitespace that starts `s` (regex ^\s*).
size_t leadingSpaceLen(std::string_view s) {
  size_t pos = 0;
  while (pos < s.size()) {
    size_t len = 0;
    if (!isWhitespace(decodeUtf8(s, pos, len))) break;
    pos += len;
  }
  return pos;
}
}  // namespace

std::vector<AddedVocabulary::Match> AddedVocabulary::findMatches(std::string_view s, const Trie& trie) const {
  std::vector<Match> out;
  if (s.empty()) return {Match{-1, 0, 0}};
  size_t startOffset = 0;
  size_t i = 0;
  while (i < s.size()) {
    if (!trie.first[static_cast<unsigned char>(s[i])]) {
      ++i;
      continue;
    }
    int node = 0, best = -1;
    size_t bestEnd = 0;
    for (size_t k = i; k < s.size(); ++k) {
      int child = -1;
      for (const auto& [c, n] : trie.nodes[static_cast<size_t>(node)].children)
        if (c == static_cast<unsigned char>(s[k])) child = n;
      if (child < 0) break;
      node = child;
      if (trie.nodes[static_cast<size_t>(node)].token >= 0) {
        best = trie.nodes[static_cast<size_t>(node)].token;
        bestEnd = k + 1;
      }
    }
    if (best < 0) {
      ++i;
      continue;
    }
    size_t start = i, stop = bestEnd;
    i = bestEnd;  // non-overlapping matches, whether or not this one is kept
    const auto& tok = m_tokens[static_cast<size_t>(best)];
    if (tok.singleWord) {
      const bool startSpace = start == 0 || !isWordChar(lastChar(s.substr(0, start)));
      size_t len = 0;
      const bool stopSpace = stop == s.size() || !isWordChar(decodeUtf8(s, stop, len));
      if (!startSpace || !stopSpace) continue;
    }
    if (tok.lstrip) start = std::max(trailingSpaceStart(s.substr(0, start)), startOffset);
    if (tok.rstrip) stop += leadingSpaceLen(s.substr(stop));
    if (startOffset < start) out.push_back(Match{-1, startOffset, start});
    out.push_back(Match{best, start, stop});
    startOffset = stop;
    i = std::max(i, stop);
  }
  if (startOffset != s.size()) out.push_back(Match{-1, startOffset, s.size()});
  return out;
}

void AddedVocabulary::splitWith(PreTokenized& p, const Trie& trie, const Normalizer* normalizer) const {
  p.split([&](NormalizedString s) {
    if (normalizer) normalizer->normalize(s);
    std::vector<Split> pieces;
    if (trie.empty()) {
      pieces.push_back(Split{std::move(s), std::nullopt});
      return pieces;
    }
    for (const auto& m : findMatches(s.get(), trie)) {
      NormalizedString slice = s.slice(m.begin, m.end);
      if (m.token < 0) {
        pieces.push_back(Split{std::move(slice), std::nullopt});
      } else {
        const std::string value = slice.get();
        const size_t len = value.size();
        pieces.push_back(Split{std::move(slice), std::vector<Token>{Token{m_tokens[static_cast<size_t>(m.token)].id, value, 0, len}}});
      }
    }
    return pieces;
  });
}

void AddedVocabulary::extractAndNormalize(PreTokenized& p, const Normalizer* normalizer) const {
  splitWith(p, m_raw, nullptr);
  splitWith(p, m_normalized, normalizer);
}

}  // namespace mechscope::tok
