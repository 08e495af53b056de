#include "core/tokenizer/normalized_string.hpp"

#include <algorithm>
#include <cstdlib>

#include <utf8proc.h>

#include "core/tokenizer/unicode_utils.hpp"

namespace mechscope::tok {

NormalizedString::NormalizedString(std::string_view original, size_t shift)
    : m_normalized(original), m_shift(shift), m_originalLen(original.size()) {
  m_align.resize(original.size());
  for (size_t i = 0; i < original.size();) {
    const size_t len = std::min(utf8SeqLen(static_cast<unsigned char>(original[i])), original.size() - i);
    const auto b = static_cast<uint32_t>(shift + i), e = static_cast<uint32_t>(shift + i + len);
    for (size_t k = 0; k < len; ++k) m_align[i + k] = {b, e};
    i += len;
  }
}

std::optional<std::pair<size_t, size_t>> NormalizedString::originalSpan(size_t begin, size_t end) const {
  if (begin == end) return std::pair<size_t, size_t>{m_shift + begin, m_shift + end};  // tokenizers' quirk
  if (begin > end || end > m_align.size()) return std::nullopt;
  return std::pair<size_t, size_t>{m_align[begin].first, m_align[end - 1].second};
}

void NormalizedString::transformRange(size_t begin, size_t end, const std::vector<CharChange>& dest,
                                      size_t initialOffset) {
  // Byte sizes of the characters being replaced, consumed as `dest` replaces or removes them.
  std::vector<size_t> replaced;
  for (size_t i = begin; i < end;) {
    const size_t len = utf8SeqLen(static_cast<unsigned char>(m_normalized[i]));
    replaced.push_back(len);
    i += len;
  }
  size_t next = 0;
  size_t offset = begin;
  for (; next < replaced.size() && next < initialOffset; ++next) offset += replaced[next];

  const std::pair<uint32_t, uint32_t> none{static_cast<uint32_t>(m_shift), static_cast<uint32_t>(m_shift)};
  auto alignAt = [&](size_t idx) {
    if (m_align.empty()) return none;
    return m_align[std::min(idx, m_align.size() - 1)];
  };
  std::string out;
  std::vector<std::pair<uint32_t, uint32_t>> align;
  out.reserve(end - begin);
  align.reserve(end - begin);
  for (const auto& [c, change] : dest) {
    const size_t idx = offset;
    const auto a = change > 0 ? (idx < 1 ? none : alignAt(idx - 1)) : alignAt(idx);
    if (change <= 0 && next < replaced.size()) offset += replaced[next++];
    for (int k = 0; k < -change && next < replaced.size(); ++k) offset += replaced[next++];
    const size_t before = out.size();
    appendUtf8(out, c);
    align.insert(align.end(), out.size() - before, a);
  }
  m_normalized.replace(begin, end - begin, out);
  m_align.erase(m_align.begin() + static_cast<std::ptrdiff_t>(begin), m_align.begin() + static_cast<std::ptrdiff_t>(end));
  m_align.insert(m_align.begin() + static_cast<std::ptrdiff_t>(begin), align.begin(), align.end());
}

namespace {

int ccc(char32_t cp) { return utf8proc_get_property(static_cast<utf8proc_int32_t>(cp))->combining_class; }

// utf8proc over a whole string; returns nullopt on error.
std::optional<std::string> utf8procMap(std::string_view s, int options) {
  utf8proc_uint8_t* dst = nullptr;
  const auto n = utf8proc_map(reinterpret_cast<const utf8proc_uint8_t*>(s.data()), static_cast<utf8proc_ssize_t>(s.size()),
                              &dst, static_cast<utf8proc_option_t>(options | UTF8PROC_STABLE));
  if (n < 0) return std::nullopt;
  std::string out(reinterpret_cast<const char*>(dst), static_cast<size_t>(n));
  std::free(dst);
  return out;
}

// The primary composite of (a, b), or 0.
char32_t composePair(char32_t a, char32_t b) {
  if (b < 0x300) return 0;  // no composition has an ASCII/Latin-1 second character
  std::string s;
  appendUtf8(s, a);
  appendUtf8(s, b);
  const auto r = utf8procMap(s, UTF8PROC_COMPOSE);
  if (!r || r->empty()) return 0;
  size_t len = 0;
  const char32_t c = decodeUtf8(*r, 0, len);
  return len == r->size() ? c : 0;
}

}  // namespace

void NormalizedString::unicodeNormalize(bool compose, bool compat) {
  int options = compose ? UTF8PROC_COMPOSE : UTF8PROC_DECOMPOSE;
  if (compat) options |= UTF8PROC_COMPAT;
  bool ascii = true;
  for (const char ch : m_normalized) ascii &= static_cast<unsigned char>(ch) < 0x80;
  if (ascii) return;
  const auto whole = utf8procMap(m_normalized, options);
  if (whole && *whole == m_normalized) return;  // already normalized: alignments unchanged

  // Decompose char by char (first piece replaces, the others are inserted), then reorder marks.
  std::vector<CharChange> seq;
  seq.reserve(m_normalized.size());
  const int decompOptions = UTF8PROC_DECOMPOSE | (compat ? UTF8PROC_COMPAT : 0);
  for (size_t i = 0; i < m_normalized.size();) {
    size_t len = 0;
    const char32_t cp = decodeUtf8(m_normalized, i, len);
    i += len;
    utf8proc_int32_t buf[32];
    int last = 0;
    const auto n = utf8proc_decompose_char(static_cast<utf8proc_int32_t>(cp), buf, 32,
                                           static_cast<utf8proc_option_t>(decompOptions), &last);
    if (n <= 0 || n > 32) {
      seq.emplace_back(cp, 0);
      continue;
    }
    for (utf8proc_ssize_t k = 0; k < n; ++k) seq.emplace_back(static_cast<char32_t>(buf[k]), k > 0 ? 1 : 0);
  }
  for (size_t i = 0; i < seq.size();) {  // canonical ordering: stable sort of each run of non-starters
    if (ccc(seq[i].first) == 0) {
      ++i;
      continue;
    }
    size_t j = i;
    while (j < seq.size() && ccc(seq[j].first) != 0) ++j;
    std::stable_sort(seq.begin() + static_cast<std::ptrdiff_t>(i), seq.begin() + static_cast<std::ptrdiff_t>(j),
                     [](const CharChange& x, const CharChange& y) { return ccc(x.first) < ccc(y.first); });
    i = j;
  }
  if (compose) {
    std::vector<CharChange> out;
    out.reserve(seq.size());
    long starter = -1;
    int lastClass = -1;  // -1: nothing since the starter
    for (const auto& [cp, change] : seq) {
      const int cls = ccc(cp);
      if (starter >= 0 && (lastClass == -1 || (lastClass != 0 && lastClass < cls))) {
        if (const char32_t comp = composePair(out[static_cast<size_t>(starter)].first, cp)) {
          out[static_cast<size_t>(starter)].first = comp;
          out[static_cast<size_t>(starter)].second += change - 1;
          continue;
        }
      }
      if (cls == 0) {
        starter = static_cast<long>(out.size());
        lastClass = -1;
      } else {
        lastClass = cls;
      }
      out.emplace_back(cp, change);
    }
    seq = std::move(out);
  }
  transform(seq, 0);
}

void NormalizedString::nfd() { unicodeNormalize(false, false); }
void NormalizedString::nfkd() { unicodeNormalize(false, true); }
void NormalizedString::nfc() { unicodeNormalize(true, false); }
void NormalizedString::nfkc() { unicodeNormalize(true, true); }

void NormalizedString::lowercase() {
  std::vector<CharChange> seq;
  seq.reserve(m_normalized.size());
  for (size_t i = 0; i < m_normalized.size();) {
    size_t len = 0;
    const char32_t cp = decodeUtf8(m_normalized, i, len);
    i += len;
    const auto lower = toLowerFull(cp);
    for (size_t k = 0; k < lower.size(); ++k) seq.emplace_back(lower[k], k > 0 ? 1 : 0);
  }
  transform(seq, 0);
}

void NormalizedString::prepend(std::string_view s) {
  if (m_normalized.empty() || s.empty()) return;
  size_t len = 0;
  const char32_t first = decodeUtf8(m_normalized, 0, len);
  std::vector<CharChange> seq;
  for (size_t i = 0, k = 0; i < s.size(); ++k) {
    size_t l = 0;
    seq.emplace_back(decodeUtf8(s, i, l), k == 0 ? 0 : 1);
    i += l;
  }
  seq.emplace_back(first, 1);
  transformRange(0, len, seq, 0);
}

void NormalizedString::append(std::string_view s) {
  if (m_normalized.empty() || s.empty()) return;
  size_t b = 0;
  for (size_t i = 0; i < m_normalized.size(); i += utf8SeqLen(static_cast<unsigned char>(m_normalized[i]))) b = i;
  size_t len = 0;
  std::vector<CharChange> seq{{decodeUtf8(m_normalized, b, len), 0}};
  for (size_t i = 0; i < s.size();) {
    size_t l = 0;
    seq.emplace_back(decodeUtf8(s, i, l), 1);
    i += l;
  }
  transformRange(b, m_normalized.size(), seq, 0);
}

void NormalizedString::replace(const Pattern& pattern, std::string_view content) {
  // Linear form of tokenizers' per-match transform_range: every content char takes the alignment of
  // the last byte of the match it replaces.
  const auto pieces = pattern.findMatches(m_normalized);
  std::string out;
  std::vector<std::pair<uint32_t, uint32_t>> align;
  out.reserve(m_normalized.size());
  align.reserve(m_align.size());
  const std::pair<uint32_t, uint32_t> none{static_cast<uint32_t>(m_shift), static_cast<uint32_t>(m_shift)};
  for (const auto& p : pieces) {
    if (!p.isMatch) {
      out.append(m_normalized, p.begin, p.end - p.begin);
      align.insert(align.end(), m_align.begin() + static_cast<std::ptrdiff_t>(p.begin),
                   m_align.begin() + static_cast<std::ptrdiff_t>(p.end));
      continue;
    }
    const auto a = p.end >= 1 ? m_align[p.end - 1] : none;
    out.append(content);
    align.insert(align.end(), content.size(), a);
  }
  m_normalized = std::move(out);
  m_align = std::move(align);
}

void NormalizedString::strip(bool left, bool right) {
  std::vector<char32_t> chars;
  for (size_t i = 0; i < m_normalized.size();) {
    size_t len = 0;
    chars.push_back(decodeUtf8(m_normalized, i, len));
    i += len;
  }
  size_t leading = 0, trailing = 0;
  if (left)
    while (leading < chars.size() && isWhitespace(chars[leading])) ++leading;
  if (right)
    while (trailing < chars.size() && isWhitespace(chars[chars.size() - 1 - trailing])) ++trailing;
  if (leading == 0 && trailing == 0) return;
  std::vector<CharChange> seq;
  const size_t n = chars.size();
  for (size_t i = 0; i < n; ++i) {
    if (i < leading || i >= n - trailing) continue;
    seq.emplace_back(chars[i], i == n - trailing - 1 ? -static_cast<int>(trailing) : 0);
  }
  transform(seq, leading);
}

void NormalizedString::filter(bool (*keep)(char32_t)) {
  std::vector<char32_t> chars;
  for (size_t i = 0; i < m_normalized.size();) {
    size_t len = 0;
    chars.push_back(decodeUtf8(m_normalized, i, len));
    i += len;
  }
  std::vector<CharChange> rev;
  int removed = 0;
  for (auto it = chars.rbegin(); it != chars.rend(); ++it) {
    if (keep(*it)) {
      rev.emplace_back(*it, -removed);
      removed = 0;
    } else {
      ++removed;
    }
  }
  std::reverse(rev.begin(), rev.end());
  transform(rev, static_cast<size_t>(removed));
}

void NormalizedString::byteLevel() {
  std::string out;
  std::vector<std::pair<uint32_t, uint32_t>> align;
  out.reserve(m_normalized.size() * 2);
  align.reserve(m_normalized.size() * 2);
  for (size_t i = 0; i < m_normalized.size();) {
    const size_t len = std::min(utf8SeqLen(static_cast<unsigned char>(m_normalized[i])), m_normalized.size() - i);
    for (size_t k = 0; k < len; ++k) {
      const auto a = k == 0 ? m_align[i] : m_align[i + len - 1];
      const size_t before = out.size();
      appendUtf8(out, byteToChar(static_cast<unsigned char>(m_normalized[i + k])));
      align.insert(align.end(), out.size() - before, a);
    }
    i += len;
  }
  m_normalized = std::move(out);
  m_align = std::move(align);
}

NormalizedString NormalizedString::slice(size_t begin, size_t end) const {
  NormalizedString s;
  s.m_normalized = m_normalized.substr(begin, end - begin);
  s.m_align.assign(m_align.begin() + static_cast<std::ptrdiff_t>(begin), m_align.begin() + static_cast<std::ptrdiff_t>(end));
  if (begin < end) {
    s.m_shift = m_align[begin].first;
    s.m_originalLen = m_align[end - 1].second >= m_align[begin].first ? m_align[end - 1].second - m_align[begin].first : 0;
  } else {
    s.m_shift = m_shift + begin;
    s.m_originalLen = 0;
  }
  return s;
}

std::vector<NormalizedString> NormalizedString::split(const Pattern& pattern, SplitBehavior behavior, bool invert) const {
  const auto matches = pattern.findMatches(m_normalized, invert);
  struct Piece {
    size_t b, e;
    bool remove;
  };
  std::vector<Piece> pieces;
  bool previousMatch = false;
  switch (behavior) {
    case SplitBehavior::Isolated:
      for (const auto& m : matches) pieces.push_back({m.begin, m.end, false});
      break;
    case SplitBehavior::Removed:
      for (const auto& m : matches) pieces.push_back({m.begin, m.end, m.isMatch});
      break;
    case SplitBehavior::Contiguous:
      for (const auto& m : matches) {
        if (m.isMatch == previousMatch && !pieces.empty())
          pieces.back().e = m.end;
        else
          pieces.push_back({m.begin, m.end, false});
        previousMatch = m.isMatch;
      }
      break;
    case SplitBehavior::MergedWithPrevious:
      for (const auto& m : matches) {
        if (m.isMatch && !previousMatch && !pieces.empty())
          pieces.back().e = m.end;
        else
          pieces.push_back({m.begin, m.end, false});
        previousMatch = m.isMatch;
      }
      break;
    case SplitBehavior::MergedWithNext:
      for (auto it = matches.rbegin(); it != matches.rend(); ++it) {
        if (it->isMatch && !previousMatch && !pieces.empty())
          pieces.back().b = it->begin;
        else
          pieces.push_back({it->begin, it->end, false});
        previousMatch = it->isMatch;
      }
      std::reverse(pieces.begin(), pieces.end());
      break;
  }
  std::vector<NormalizedString> out;
  out.reserve(pieces.size());
  for (const auto& p : pieces)
    if (!p.remove) out.push_back(slice(p.b, p.e));
  return out;
}

}  // namespace mechscope::tok
