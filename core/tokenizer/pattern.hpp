#pragma once
// Patterns that split or replace text, as `tokenizers`' Pattern trait: a PCRE2 regex written in
// Oniguruma syntax, a literal string, or a per-character predicate.
#include <cstddef>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace mechscope::tok {

/// One piece of a covering split: byte range [begin, end) and whether it is a match.
struct PatternPiece {
  size_t begin = 0;
  size_t end = 0;
  bool isMatch = false;
};

/// A compiled PCRE2 regex (UTF + UCP, JIT when available); Oniguruma's `\s` and `\w` are translated.
class Regex {
 public:
  /// Compile `pattern`; throws InputError naming `component` when it does not compile.
  Regex(const std::string& pattern, const std::string& component);
  ~Regex();
  Regex(const Regex&) = delete;
  Regex& operator=(const Regex&) = delete;
  /// Non-overlapping matches as the onig crate's find_iter yields them (empty matches included).
  std::vector<std::pair<size_t, size_t>> findAll(std::string_view text) const;
  /// Whether the pattern matches anywhere in `text`.
  bool search(std::string_view text) const;

 private:
  void* m_code = nullptr;  // pcre2_code_8*
  bool m_jit = false;
};

/// What a Split / Replace / Metaspace / Digits step matches on.
class Pattern {
 public:
  /// A regex pattern (Oniguruma syntax).
  static Pattern regex(const std::string& pattern, const std::string& component);
  /// A literal string (escaped regex semantics: non-overlapping, leftmost).
  static Pattern literal(std::string text);
  /// Single characters for which `pred` holds.
  static Pattern predicate(std::function<bool(char32_t)> pred);

  /// The covering list of pieces (pattern.rs `find_matches`); `invert` flips the match flags.
  std::vector<PatternPiece> findMatches(std::string_view text, bool invert = false) const;

 private:
  std::shared_ptr<const Regex> m_regex;
  std::string m_literal;
  std::function<bool(char32_t)> m_pred;
  int m_kind = 0;  // 0 regex, 1 literal, 2 predicate
};

}  // namespace mechscope::tok
