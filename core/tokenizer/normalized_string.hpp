#pragma once
// NormalizedString / PreTokenizedString as in `tokenizers`: the text being normalized plus, for every
// byte of it, the byte span in the original text it came from, so offsets survive every step.
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "core/tokenizer/pattern.hpp"

namespace mechscope::tok {

/// How Split keeps the delimiters it finds.
enum class SplitBehavior { Removed, Isolated, MergedWithPrevious, MergedWithNext, Contiguous };

/// One (char, change) step of a transform: change 1 = inserted, 0 = replaces one char, -N = replaces one
/// and removes the N following chars.
using CharChange = std::pair<char32_t, int>;

/// A slice of the original text and its normalized form with per-byte alignments.
class NormalizedString {
 public:
  NormalizedString() = default;
  /// The whole of `original` (valid UTF-8), starting at byte `shift` of the full input.
  explicit NormalizedString(std::string_view original, size_t shift = 0);

  /// The normalized text.
  const std::string& get() const { return m_normalized; }
  /// Whether the normalized text is empty.
  bool empty() const { return m_normalized.empty(); }
  /// Byte span [begin, end) of this slice in the full original input.
  std::pair<size_t, size_t> offsetsOriginal() const { return {m_shift, m_shift + m_originalLen}; }
  /// Original byte span of the normalized byte range [begin, end) (convert_offsets semantics); nullopt out of range.
  std::optional<std::pair<size_t, size_t>> originalSpan(size_t begin, size_t end) const;

  /// Replace the normalized range [begin, end) by `dest` (transform_range with `initialOffset` chars removed first).
  void transformRange(size_t begin, size_t end, const std::vector<CharChange>& dest, size_t initialOffset);
  /// transformRange over the whole normalized text.
  void transform(const std::vector<CharChange>& dest, size_t initialOffset) {
    transformRange(0, m_normalized.size(), dest, initialOffset);
  }

  /// Unicode normalization forms (utf8proc), with the alignments `tokenizers` computes.
  void nfd();
  void nfkd();
  void nfc();
  void nfkc();
  /// Full lowercase mapping.
  void lowercase();
  /// Prepend `s` (nothing when empty).
  void prepend(std::string_view s);
  /// Append `s` (nothing when empty).
  void append(std::string_view s);
  /// Replace each match of `pattern` with `content`.
  void replace(const Pattern& pattern, std::string_view content);
  /// Strip Unicode whitespace on the left and/or right.
  void strip(bool left, bool right);
  /// Remove characters for which `keep` is false.
  void filter(bool (*keep)(char32_t));
  /// Replace each byte by its GPT-2 byte character (the ByteLevel pre-tokenizer's step).
  void byteLevel();

  /// Slice by normalized byte range (must lie on char boundaries).
  NormalizedString slice(size_t begin, size_t end) const;
  /// Split by `pattern` with `behavior` (normalizer.rs `split`), empty pieces included.
  std::vector<NormalizedString> split(const Pattern& pattern, SplitBehavior behavior, bool invert = false) const;

 private:
  void unicodeNormalize(bool compose, bool compat);

  std::string m_normalized;
  std::vector<std::pair<uint32_t, uint32_t>> m_align;  // [normalized bytes] absolute original byte spans
  size_t m_shift = 0;
  size_t m_originalLen = 0;
};

/// A token produced by a model or an added-token match; offsets are bytes in its split's normalized text.
struct Token {
  int64_t id = 0;
  std::string value;
  size_t begin = 0;
  size_t end = 0;
};

/// A piece of the input being pre-tokenized; `tokens` is set once it is tokenized (or an added token).
struct Split {
  NormalizedString normalized;
  std::optional<std::vector<Token>> tokens;
};

/// The input cut into splits (PreTokenizedString).
struct PreTokenized {
  std::vector<Split> splits;
  /// Replace each untokenized split by the pieces `fn` returns (empty ones dropped).
  template <typename Fn>
  void split(Fn&& fn) {
    std::vector<Split> next;
    next.reserve(splits.size());
    for (auto& s : splits) {
      if (s.tokens) {
        next.push_back(std::move(s));
        continue;
      }
      for (auto& piece : fn(std::move(s.normalized))) {
        if constexpr (std::is_same_v<std::decay_t<decltype(piece)>, Split>) {
          if (!piece.normalized.empty()) next.push_back(std::move(piece));
        } else {
          if (!piece.empty()) next.push_back(Split{std::move(piece), std::nullopt});
        }
      }
    }
    splits = std::move(next);
  }
};

}  // namespace mechscope::tok
