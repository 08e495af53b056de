// Tokenizer::displayToken: readable, always-valid-UTF-8 labels for plots and tables.
#include <fmt/format.h>

#include "core/tokenizer/tokenizer_impl.hpp"
#include "core/tokenizer/unicode_utils.hpp"

namespace mechscope {
namespace {

// One code point made visible: space → ␣, newline → ↵, tab → ⇥, other controls → control pictures.
void appendVisible(std::string& out, char32_t c) {
  if (c == ' ') out += "\xE2\x90\xA3";             // ␣
  else if (c == '\n') out += "\xE2\x86\xB5";       // ↵
  else if (c == '\t') out += "\xE2\x87\xA5";       // ⇥
  else if (c < 0x20) tok::appendUtf8(out, 0x2400 + c);  // ␀ .. ␟ (␍ for \r)
  else if (c == 0x7F) out += "\xE2\x90\xA1";       // ␡
  else tok::appendUtf8(out, c);
}

// Bytes shown as text: valid UTF-8 made visible, each invalid byte as \xNN.
std::string showBytes(std::string_view bytes) {
  std::string out;
  const std::string lossy = tok::utf8Lossy(bytes);
  if (lossy == bytes) {
    for (size_t i = 0; i < bytes.size();) {
      size_t len = 0;
      appendVisible(out, tok::decodeUtf8(bytes, i, len));
      i += len;
    }
    return out;
  }
  for (size_t i = 0; i < bytes.size();) {  // walk valid sequences, escape the rest
    const size_t len = tok::utf8SeqLen(static_cast<unsigned char>(bytes[i]));
    if (i + len <= bytes.size() && (len > 1 || static_cast<unsigned char>(bytes[i]) < 0x80) &&
        tok::isValidUtf8(bytes.substr(i, len))) {
      size_t l = 0;
      appendVisible(out, tok::decodeUtf8(bytes, i, l));
      i += len;
    } else {
      out += fmt::format("\\x{:02X}", static_cast<unsigned char>(bytes[i]));
      ++i;
    }
  }
  return out;
}

int hexVal(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;
}

}  // namespace

std::string Tokenizer::displayToken(int64_t id) const {
  const Impl& im = *m_impl;
  if (const auto* a = im.added.byId(id)) return showBytes(a->content);
  const std::string* t = im.model->idToToken(id);
  if (!t) return fmt::format("<id {}>", id);
  const std::string& s = *t;
  if (s.size() == 6 && s.compare(0, 3, "<0x") == 0 && s[5] == '>' && hexVal(s[3]) >= 0 && hexVal(s[4]) >= 0) {
    const int b = hexVal(s[3]) * 16 + hexVal(s[4]);
    if (b < 0x80) return showBytes(std::string(1, static_cast<char>(b)));
    return s;  // a lone byte of a multi-byte character
  }
  if (im.style == VocabStyle::ByteLevel) {
    std::string bytes;
    for (size_t i = 0; i < s.size();) {
      size_t len = 0;
      const int b = tok::charToByte(tok::decodeUtf8(s, i, len));
      if (b < 0) return showBytes(s);
      bytes.push_back(static_cast<char>(b));
      i += len;
    }
    return showBytes(bytes);
  }
  if (im.style == VocabStyle::Metaspace) {
    std::string replaced;
    for (size_t pos = 0;;) {
      const size_t f = s.find(im.metaspaceChar, pos);
      replaced.append(s, pos, f == std::string::npos ? std::string::npos : f - pos);
      if (f == std::string::npos) break;
      replaced += ' ';
      pos = f + im.metaspaceChar.size();
    }
    return showBytes(replaced);
  }
  return showBytes(s);
}

}  // namespace mechscope
