#include "core/tokenizer/pattern.hpp"

#include <pcre2.h>
#include <utf8proc.h>

#include <mutex>

#include <fmt/format.h>

#include "core/common/errors.hpp"
#include "core/tokenizer/unicode_utils.hpp"

namespace mechscope::tok {
namespace {

// Code points of a general category ('L' or 'N') in utf8proc's Unicode (15) that Debian's PCRE2
// (Unicode 14 tables) does not put in \p{L}/\p{N}, as class ranges "\x{a}-\x{b}". Oniguruma, which
// `tokenizers` uses, knows them (e.g. Nag Mundari digits U+1E4F0.., CJK extension H).
std::string computeMissingRanges(char category) {
  const std::string probe = std::string("^\\p{") + category + "}$";
  int err = 0;
  PCRE2_SIZE off = 0;
  pcre2_code* re = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(probe.c_str()), probe.size(), PCRE2_UTF | PCRE2_UCP, &err,
                                 &off, nullptr);
  if (!re) return {};
  pcre2_match_data* md = pcre2_match_data_create_from_pattern(re, nullptr);
  std::string out;
  int64_t runStart = -1, last = -2;
  auto flush = [&] {
    if (runStart >= 0) out += last == runStart ? fmt::format("\\x{{{:x}}}", runStart)
                                               : fmt::format("\\x{{{:x}}}-\\x{{{:x}}}", runStart, last);
    runStart = -1;
  };
  utf8proc_uint8_t buf[4];
  for (utf8proc_int32_t cp = 0; cp <= 0x10FFFF; ++cp) {
    if (cp >= 0xD800 && cp <= 0xDFFF) continue;
    if (utf8proc_category_string(cp)[0] != category) continue;
    const auto n = utf8proc_encode_char(cp, buf);
    if (pcre2_match(re, buf, static_cast<PCRE2_SIZE>(n), 0, 0, md, nullptr) >= 0) continue;
    if (cp != last + 1) flush();
    if (runStart < 0) runStart = cp;
    last = cp;
  }
  flush();
  pcre2_match_data_free(md);
  pcre2_code_free(re);
  return out;
}

const std::string& missingRanges(char category) {
  static std::once_flag once;
  static std::string letters, numbers;
  std::call_once(once, [] {
    letters = computeMissingRanges('L');
    numbers = computeMissingRanges('N');
  });
  return category == 'L' ? letters : numbers;
}

// Oniguruma (what `tokenizers` uses) and PCRE2 differ on a few classes in Unicode mode: onig's `\s` is
// [\t-\r\x85\p{Z}] (PCRE2 also counts U+180E) and `\w` is letters, marks, Nd and Pc.
std::string translateOniguruma(const std::string& p) {
  static const std::string kSpace = R"(\t-\r\x{85}\p{Z})";
  static const std::string kWord = R"(\p{L}\p{M}\p{Nd}\p{Pc})";
  std::string out;
  out.reserve(p.size() + 16);
  bool inClass = false;
  for (size_t i = 0; i < p.size(); ++i) {
    const char c = p[i];
    if (c == '\\' && i + 1 < p.size()) {
      const char n = p[++i];
      if (n == 'p' && i + 3 < p.size() && p[i + 1] == '{' && (p[i + 2] == 'L' || p[i + 2] == 'N') && p[i + 3] == '}') {
        // \p{L} / \p{N}: add what PCRE2's older Unicode tables miss.
        const std::string cls = std::string("\\p{") + p[i + 2] + "}" + missingRanges(p[i + 2]);
        out += inClass ? cls : "[" + cls + "]";
        i += 3;
        continue;
      }
      const std::string* set = (n == 's' || n == 'S') ? &kSpace : (n == 'w' || n == 'W') ? &kWord : nullptr;
      if (set) {
        const bool negated = (n == 'S' || n == 'W');
        if (!inClass) {
          out += negated ? "[^" : "[";
          out += *set;
          out += "]";
        } else if (!negated) {
          out += *set;
        } else {
          out += '\\';
          out += n;  // a negated class inside a class: keep PCRE2's meaning
        }
      } else {
        out += '\\';
        out += n;
      }
      continue;
    }
    if (!inClass && c == '[') {
      inClass = true;
      out += c;
      if (i + 1 < p.size() && p[i + 1] == '^') out += p[++i];
      if (i + 1 < p.size() && p[i + 1] == ']') out += p[++i];  // literal ']' first in a class
      continue;
    }
    if (inClass && c == '[' && i + 1 < p.size() && p[i + 1] == ':') {  // POSIX [:alpha:]
      const size_t close = p.find(":]", i + 2);
      if (close != std::string::npos) {
        out.append(p, i, close + 2 - i);
        i = close + 1;
        continue;
      }
    }
    if (inClass && c == ']') inClass = false;
    out += c;
  }
  return out;
}

}  // namespace

Regex::Regex(const std::string& pattern, const std::string& component) {
  const std::string translated = translateOniguruma(pattern);
  int err = 0;
  PCRE2_SIZE errOffset = 0;
  auto* code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(translated.data()), translated.size(),
                             PCRE2_UTF | PCRE2_UCP, &err, &errOffset, nullptr);
  if (!code) {
    PCRE2_UCHAR msg[256];
    pcre2_get_error_message(err, msg, sizeof(msg));
    throw InputError(fmt::format("{}: regex '{}' does not compile at offset {}: {}", component, pattern, errOffset,
                                 reinterpret_cast<const char*>(msg)));
  }
  m_code = code;
  m_jit = pcre2_jit_compile(code, PCRE2_JIT_COMPLETE) == 0;
}

Regex::~Regex() { pcre2_code_free(static_cast<pcre2_code*>(m_code)); }

namespace {
struct MatchData {
  pcre2_match_data* md;
  explicit MatchData(const pcre2_code* code) : md(pcre2_match_data_create_from_pattern(code, nullptr)) {}
  ~MatchData() { pcre2_match_data_free(md); }
  MatchData(const MatchData&) = delete;
  MatchData& operator=(const MatchData&) = delete;
};

// One match at or after `start`; returns false when none. Falls back to the interpreter when the JIT
// stack is too small for this subject.
bool matchOnce(const pcre2_code* code, bool jit, std::string_view text, size_t start, pcre2_match_data* md,
               size_t& mBegin, size_t& mEnd) {
  auto subject = reinterpret_cast<PCRE2_SPTR>(text.data());
  int rc = pcre2_match(code, subject, text.size(), start, PCRE2_NO_UTF_CHECK, md, nullptr);
  if (rc == PCRE2_ERROR_JIT_STACKLIMIT && jit)
    rc = pcre2_match(code, subject, text.size(), start, PCRE2_NO_UTF_CHECK | PCRE2_NO_JIT, md, nullptr);
  if (rc == PCRE2_ERROR_NOMATCH) return false;
  if (rc < 0) {
    PCRE2_UCHAR msg[256];
    pcre2_get_error_message(rc, msg, sizeof(msg));
    throw InputError(fmt::format("tokenizer regex: matching failed: {}", reinterpret_cast<const char*>(msg)));
  }
  const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(md);
  mBegin = ov[0];
  mEnd = ov[1];
  return true;
}
}  // namespace

std::vector<std::pair<size_t, size_t>> Regex::findAll(std::string_view text) const {
  std::vector<std::pair<size_t, size_t>> out;
  const auto* code = static_cast<const pcre2_code*>(m_code);
  MatchData data(code);
  size_t lastEnd = 0;
  bool haveLast = false;
  size_t lastMatchEnd = 0;
  while (lastEnd <= text.size()) {
    size_t b = 0, e = 0;
    if (!matchOnce(code, m_jit, text, lastEnd, data.md, b, e)) break;
    if (b == e && haveLast && lastMatchEnd == e) {  // no empty match right after a match
      lastEnd += lastEnd < text.size() ? utf8SeqLen(static_cast<unsigned char>(text[lastEnd])) : 1;
      continue;
    }
    lastEnd = e;
    haveLast = true;
    lastMatchEnd = e;
    out.emplace_back(b, e);
  }
  return out;
}

bool Regex::search(std::string_view text) const {
  const auto* code = static_cast<const pcre2_code*>(m_code);
  MatchData data(code);
  size_t b = 0, e = 0;
  return matchOnce(code, m_jit, text, 0, data.md, b, e);
}

Pattern Pattern::regex(const std::string& pattern, const std::string& component) {
  Pattern p;
  p.m_kind = 0;
  p.m_regex = std::make_shared<const Regex>(pattern, component);
  return p;
}

Pattern Pattern::literal(std::string text) {
  Pattern p;
  p.m_kind = 1;
  p.m_literal = std::move(text);
  return p;
}

Pattern Pattern::predicate(std::function<bool(char32_t)> pred) {
  Pattern p;
  p.m_kind = 2;
  p.m_pred = std::move(pred);
  return p;
}

std::vector<PatternPiece> Pattern::findMatches(std::string_view text, bool invert) const {
  std::vector<PatternPiece> out;
  auto push = [&](size_t b, size_t e, bool m) { out.push_back(PatternPiece{b, e, m != invert}); };
  if (m_kind == 1 && m_literal.empty()) {
    // tokenizers quirk: an empty literal matches nothing and reports the length in chars
    push(0, countCodePoints(text), false);
    return out;
  }
  if (text.empty()) {
    push(0, 0, false);
    return out;
  }
  if (m_kind == 2) {
    size_t lastOffset = 0, lastSeen = 0;
    for (size_t i = 0; i < text.size();) {
      size_t len = 0;
      const char32_t cp = decodeUtf8(text, i, len);
      lastSeen = i + len;
      if (m_pred(cp)) {
        if (lastOffset < i) push(lastOffset, i, false);
        push(i, i + len, true);
        lastOffset = i + len;
      }
      i += len;
    }
    if (lastSeen > lastOffset) push(lastOffset, lastSeen, false);
    return out;
  }
  std::vector<std::pair<size_t, size_t>> matches;
  if (m_kind == 0) {
    matches = m_regex->findAll(text);
  } else {
    for (size_t pos = text.find(m_literal); pos != std::string_view::npos; pos = text.find(m_literal, pos + m_literal.size()))
      matches.emplace_back(pos, pos + m_literal.size());
  }
  size_t prev = 0;
  for (const auto& [b, e] : matches) {
    if (prev != b) push(prev, b, false);
    push(b, e, true);
    prev = e;
  }
  if (prev != text.size()) push(prev, text.size(), false);
  return out;
}

}  // namespace mechscope::tok
