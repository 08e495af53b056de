#pragma once
// UTF-8 and Unicode-property helpers shared by the tokenizer components (utf8proc underneath).
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace mechscope::tok {

/// Byte length of the UTF-8 sequence starting with `lead` (1 for invalid lead bytes).
inline size_t utf8SeqLen(unsigned char lead) {
  if (lead < 0x80) return 1;
  if ((lead >> 5) == 0x6) return 2;
  if ((lead >> 4) == 0xE) return 3;
  if ((lead >> 3) == 0x1E) return 4;
  return 1;
}
/// Decode the code point at byte `pos` of valid UTF-8 `s`; sets `len` to its byte length.
char32_t decodeUtf8(std::string_view s, size_t pos, size_t& len);
/// Append `cp` to `out` as UTF-8.
void appendUtf8(std::string& out, char32_t cp);
/// Byte length of `cp` in UTF-8.
size_t utf8Len(char32_t cp);
/// `text` with every invalid UTF-8 sequence replaced by U+FFFD (as Python's errors='replace').
std::string sanitizeUtf8(std::string_view text);
/// Whether `text` is valid UTF-8.
bool isValidUtf8(std::string_view text);
/// Bytes → text with maximal invalid subsequences replaced by U+FFFD (Rust's from_utf8_lossy).
std::string utf8Lossy(std::string_view bytes);
/// Number of code points in valid UTF-8 `s`.
size_t countCodePoints(std::string_view s);

/// Unicode White_Space (Rust char::is_whitespace).
bool isWhitespace(char32_t cp);
/// Rust char::is_numeric: general categories Nd, Nl, No.
bool isNumeric(char32_t cp);
/// Punctuation as the BERT/Punctuation pre-tokenizers see it: ASCII punctuation or a P* category.
bool isPunctuation(char32_t cp);
/// Word character as Rust regex `\w`: letters, marks, Nd, Nl, Pc, ZWJ/ZWNJ.
bool isWordChar(char32_t cp);
/// Unicode general category Mn/Mc/Me.
bool isMark(char32_t cp);
/// Full lowercase mapping (İ → i̇), written as UTF-32.
std::u32string toLowerFull(char32_t cp);

/// GPT-2 byte → printable code point table (Ġ for ' ', Ċ for '\n', ...).
char32_t byteToChar(unsigned char b);
/// Inverse of byteToChar; -1 when `cp` is not one of the 256 byte characters.
int charToByte(char32_t cp);

}  // namespace mechscope::tok
