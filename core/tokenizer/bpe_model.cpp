#include "core/tokenizer/bpe_model.hpp"

#include <queue>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "core/common/errors.hpp"
#include "core/tokenizer/json_util.hpp"
#include "core/tokenizer/unicode_utils.hpp"

namespace mechscope::tok {
namespace {
constexpr size_t kCacheCapacity = 100000;
constexpr size_t kCacheMaxWordBytes = 256;

std::optional<std::string> optString(const nlohmann::json& j, const char* key, const std::string& where) {
  const auto it = j.find(key);
  if (it == j.end() || it->is_null()) return std::nullopt;
  if (!it->is_string()) throw InputError(fmt::format("{}: expected \"{}\" to be a string or null, found {}", where, key, it->type_name()));
  return it->get<std::string>();
}
}  // namespace

namespace {
constexpr int64_t kVocabIdSlack = 65536;  ///< ids may exceed 2 × the entry count by this much
}  // namespace

BpeModel::BpeModel(const nlohmann::json& model, const std::string& where) {
  const auto vit = model.find("vocab");
  if (vit == model.end() || !vit->is_object())
    throw InputError(fmt::format("{}: expected a \"vocab\" object of token → id", where));
  m_vocab.reserve(vit->size());
  int64_t maxId = -1;
  for (auto it = vit->begin(); it != vit->end(); ++it) {
    if (!it.value().is_number_integer() || it.value().get<int64_t>() < 0)
      throw InputError(fmt::format("{}: vocab entry '{}' has id {}, expected a non-negative integer", where, it.key(), it.value().dump()));
    const int64_t id = it.value().get<int64_t>();
    m_vocab.emplace(it.key(), id);
    maxId = std::max(maxId, id);
  }
  // Ids index a table: a hostile file with one id of 2^40 must not allocate terabytes. Real vocabularies
  // are dense (ids 0..n-1); allow gaps, not ids far past the number of entries.
  const int64_t idLimit = 2 * static_cast<int64_t>(m_vocab.size()) + kVocabIdSlack;
  if (maxId >= idLimit)
    throw InputError(fmt::format("{}: vocab id {} is far beyond the vocabulary's {} entries (ids must be below {})", where,
                                 maxId, m_vocab.size(), idLimit));
  m_vocabR.resize(static_cast<size_t>(maxId + 1));
  m_hasId.assign(static_cast<size_t>(maxId + 1), false);
  for (const auto& [tok, id] : m_vocab) {
    m_vocabR[static_cast<size_t>(id)] = tok;
    m_hasId[static_cast<size_t>(id)] = true;
  }
  m_unk = optString(model, "unk_token", where);
  m_prefix = optString(model, "continuing_subword_prefix", where);
  m_suffix = optString(model, "end_of_word_suffix", where);
  m_byteFallback = jsonBool(model, "byte_fallback", false, where);
  m_fuseUnk = jsonBool(model, "fuse_unk", false, where);
  m_ignoreMerges = jsonBool(model, "ignore_merges", false, where);
  if (const auto d = model.find("dropout"); d != model.end() && !d->is_null()) {
    if (!d->is_number()) throw InputError(fmt::format("{}: expected \"dropout\" to be a number or null, found {}", where, d->type_name()));
    m_hasDropout = d->get<double>() > 0.0;
  }
  if (m_unk && !m_vocab.count(*m_unk))
    throw InputError(fmt::format("{}: unk_token '{}' is not in the vocabulary", where, *m_unk));
  for (int b = 0; b < 256; ++b) {
    m_byteTokens[b] = fmt::format("<0x{:02X}>", b);
    if (const auto it = m_vocab.find(m_byteTokens[b]); it != m_vocab.end()) m_byteIds[b] = it->second;
  }

  if (model.value("type", std::string()) == "WordLevel") {
    // WordLevel: each pre-tokenized word is one vocabulary entry or the unk token; no merges.
    m_wordLevel = true;
    if (!m_unk) throw InputError(fmt::format("{}: WordLevel needs an \"unk_token\" in the vocabulary", where));
    return;
  }
  const auto mit = model.find("merges");
  if (mit == model.end() || !mit->is_array()) throw InputError(fmt::format("{}: expected a \"merges\" array", where));
  m_merges.reserve(mit->size());
  const size_t prefixLen = m_prefix ? m_prefix->size() : 0;
  std::string a, b;
  for (size_t i = 0; i < mit->size(); ++i) {
    const auto& m = (*mit)[i];
    if (m.is_string()) {
      const auto& s = m.get_ref<const std::string&>();
      const size_t sp = s.find(' ');
      if (sp == std::string::npos || s.find(' ', sp + 1) != std::string::npos)
        throw InputError(fmt::format("{}: merges[{}] = '{}' is not two tokens separated by one space", where, i, s));
      a.assign(s, 0, sp);
      b.assign(s, sp + 1, std::string::npos);
    } else if (m.is_array() && m.size() == 2 && m[0].is_string() && m[1].is_string()) {
      a = m[0].get<std::string>();
      b = m[1].get<std::string>();
    } else {
      throw InputError(fmt::format("{}: merges[{}] = {} is neither \"a b\" nor [\"a\", \"b\"]", where, i, m.dump()));
    }
    const auto ia = m_vocab.find(a);
    if (ia == m_vocab.end()) throw InputError(fmt::format("{}: merges[{}] names token '{}' that is not in the vocabulary", where, i, a));
    const auto ib = m_vocab.find(b);
    if (ib == m_vocab.end()) throw InputError(fmt::format("{}: merges[{}] names token '{}' that is not in the vocabulary", where, i, b));
    const std::string merged = a + (prefixLen <= b.size() ? b.substr(prefixLen) : std::string());
    const auto im = m_vocab.find(merged);
    if (im == m_vocab.end())
      throw InputError(fmt::format("{}: merges[{}] ('{}' + '{}') makes '{}' that is not in the vocabulary", where, i, a, b, merged));
    const uint64_t key = (static_cast<uint64_t>(ia->second) << 32) | static_cast<uint64_t>(ib->second);
    m_merges.insert_or_assign(key, std::pair<uint32_t, int64_t>{static_cast<uint32_t>(i), im->second});
  }
}

std::optional<int64_t> BpeModel::tokenToId(std::string_view token) const {
  const auto it = m_vocab.find(token);
  if (it == m_vocab.end()) return std::nullopt;
  return it->second;
}

const std::string* BpeModel::idToToken(int64_t id) const {
  if (id < 0 || id >= idBound() || !m_hasId[static_cast<size_t>(id)]) return nullptr;
  return &m_vocabR[static_cast<size_t>(id)];
}

std::vector<std::pair<int64_t, uint32_t>> BpeModel::mergeWord(std::string_view w) const {
  std::vector<Symbol> symbols;
  symbols.reserve(w.size());
  auto add = [&](int64_t id, size_t len) {
    const auto n = static_cast<int32_t>(symbols.size());
    symbols.push_back(Symbol{id, static_cast<uint32_t>(len), n - 1, -1});
    if (n > 0) symbols[static_cast<size_t>(n - 1)].next = n;
  };
  bool hasUnk = false;  // a pending (possibly fused) unknown token
  int64_t unkId = 0;
  size_t unkLen = 0;
  std::string piece;
  for (size_t i = 0; i < w.size();) {
    const size_t len = std::min(utf8SeqLen(static_cast<unsigned char>(w[i])), w.size() - i);
    const bool isFirst = i == 0, isLast = i + len == w.size();
    piece.clear();
    if (!isFirst && m_prefix) piece += *m_prefix;
    piece.append(w.substr(i, len));
    if (isLast && m_suffix) piece += *m_suffix;
    if (const auto it = m_vocab.find(piece); it != m_vocab.end()) {
      if (hasUnk) {
        add(unkId, unkLen);
        hasUnk = false;
      }
      add(it->second, len);
    } else {
      bool done = false;
      if (m_byteFallback) {
        bool all = true;
        for (const char c : piece) all &= m_byteIds[static_cast<unsigned char>(c)].has_value();
        if (all) {
          for (const char c : piece) add(*m_byteIds[static_cast<unsigned char>(c)], 1);
          done = true;
        }
      }
      if (!done && m_unk) {
        if (hasUnk && m_fuseUnk) {
          unkLen += len;
        } else {
          if (hasUnk) add(unkId, unkLen);
          hasUnk = true;
          unkId = m_vocab.find(*m_unk)->second;
          unkLen = len;
        }
      }
    }
    i += len;
  }
  if (hasUnk) add(unkId, unkLen);

  // Merge the lowest-ranked pair first (leftmost on ties), as tokenizers' Word::merge_all.
  struct Merge {
    uint32_t rank;
    int32_t pos;
    int64_t newId;
    bool operator<(const Merge& o) const { return rank != o.rank ? rank > o.rank : pos > o.pos; }
  };
  auto lookup = [&](int64_t a, int64_t b) -> const std::pair<uint32_t, int64_t>* {
    const auto it = m_merges.find((static_cast<uint64_t>(a) << 32) | static_cast<uint64_t>(b));
    return it == m_merges.end() ? nullptr : &it->second;
  };
  std::priority_queue<Merge> queue;
  for (size_t i = 0; i + 1 < symbols.size(); ++i)
    if (const auto* m = lookup(symbols[i].id, symbols[i + 1].id)) queue.push(Merge{m->first, static_cast<int32_t>(i), m->second});
  while (!queue.empty()) {
    const Merge top = queue.top();
    queue.pop();
    Symbol& cur = symbols[static_cast<size_t>(top.pos)];
    if (cur.len == 0 || cur.next == -1) continue;
    const Symbol right = symbols[static_cast<size_t>(cur.next)];
    const auto* m = lookup(cur.id, right.id);
    if (!m || m->second != top.newId) continue;
    const int32_t rightPos = cur.next;
    cur.id = top.newId;
    cur.len += right.len;
    cur.next = right.next;
    symbols[static_cast<size_t>(rightPos)].len = 0;
    if (right.next > -1 && static_cast<size_t>(right.next) < symbols.size()) symbols[static_cast<size_t>(right.next)].prev = top.pos;
    if (cur.prev >= 0) {
      const Symbol& prev = symbols[static_cast<size_t>(cur.prev)];
      if (const auto* pm = lookup(prev.id, cur.id)) queue.push(Merge{pm->first, cur.prev, pm->second});
    }
    if (cur.next >= 0 && static_cast<size_t>(cur.next) < symbols.size()) {
      const Symbol& next = symbols[static_cast<size_t>(cur.next)];
      if (const auto* nm = lookup(cur.id, next.id)) queue.push(Merge{nm->first, top.pos, nm->second});
    }
  }
  std::vector<std::pair<int64_t, uint32_t>> out;
  for (const auto& s : symbols)
    if (s.len != 0) out.emplace_back(s.id, s.len);
  return out;
}

std::vector<Token> BpeModel::tokenize(std::string_view word) const {
  std::vector<Token> out;
  if (word.empty()) return out;
  if (m_wordLevel) {
    const auto it = m_vocab.find(word);
    const int64_t id = it != m_vocab.end() ? it->second : m_vocab.find(*m_unk)->second;
    out.push_back(Token{id, it != m_vocab.end() ? std::string(word) : *m_unk, 0, word.size()});
    return out;
  }
  if (m_ignoreMerges) {
    if (const auto it = m_vocab.find(word); it != m_vocab.end()) {
      out.push_back(Token{it->second, std::string(word), 0, word.size()});
      return out;
    }
  }
  std::vector<std::pair<int64_t, uint32_t>> symbols;
  bool cached = false;
  const bool cacheable = word.size() < kCacheMaxWordBytes;
  if (cacheable) {
    std::lock_guard lock(m_cacheMutex);
    if (const auto it = m_cache.find(word); it != m_cache.end()) {
      symbols = it->second;
      cached = true;
    }
  }
  if (!cached) {
    symbols = mergeWord(word);
    if (cacheable) {
      std::lock_guard lock(m_cacheMutex);
      if (m_cache.size() >= kCacheCapacity) m_cache.clear();
      m_cache.emplace(std::string(word), symbols);
    }
  }
  out.reserve(symbols.size());
  size_t pos = 0;
  for (const auto& [id, len] : symbols) {
    const std::string* value = idToToken(id);
    out.push_back(Token{id, value ? *value : std::string(), pos, pos + len});
    pos += len;
  }
  return out;
}

}  // namespace mechscope::tok
