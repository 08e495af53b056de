// Decoders: ByteLevel, Metaspace, ByteFallback, Fuse, Strip, Replace, BPEDecoder, Sequence.
#include <fmt/format.h>

#include "core/tokenizer/components.hpp"
#include "core/tokenizer/json_util.hpp"
#include "core/tokenizer/unicode_utils.hpp"

namespace mechscope::tok {
namespace {

class ByteLevelDecoder final : public Decoder {
 public:
  std::vector<std::string> decodeChain(std::vector<std::string> tokens) const override {
    std::string bytes;
    for (const auto& t : tokens) {
      std::string tb;
      bool ok = true;
      for (size_t i = 0; i < t.size() && ok;) {
        size_t len = 0;
        const int b = charToByte(decodeUtf8(t, i, len));
        i += len;
        if (b < 0) ok = false;
        else tb.push_back(static_cast<char>(b));
      }
      bytes += ok ? tb : t;  // a token with a non-byte character goes through as it is
    }
    return {utf8Lossy(bytes)};
  }
};

class MetaspaceDecoder final : public Decoder {
 public:
  MetaspaceDecoder(char32_t replacement, bool prepend) : m_replacement(replacement), m_prepend(prepend) {}
  std::vector<std::string> decodeChain(std::vector<std::string> tokens) const override {
    std::vector<std::string> out;
    out.reserve(tokens.size());
    for (size_t i = 0; i < tokens.size(); ++i) {
      std::string s;
      const auto& t = tokens[i];
      for (size_t k = 0; k < t.size();) {
        size_t len = 0;
        const char32_t c = decodeUtf8(t, k, len);
        if (c == m_replacement) {
          if (!(i == 0 && m_prepend)) s.push_back(' ');
        } else {
          s.append(t, k, len);
        }
        k += len;
      }
      out.push_back(std::move(s));
    }
    return out;
  }

 private:
  char32_t m_replacement;
  bool m_prepend;
};

int hexDigit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

class ByteFallbackDecoder final : public Decoder {
 public:
  std::vector<std::string> decodeChain(std::vector<std::string> tokens) const override {
    std::vector<std::string> out;
    std::string pending;
    auto flush = [&] {
      if (pending.empty()) return;
      if (isValidUtf8(pending)) {
        out.push_back(pending);
      } else {
        std::string rep;
        for (size_t k = 0; k < pending.size(); ++k) rep += "\xEF\xBF\xBD";
        out.push_back(rep);
      }
      pending.clear();
    };
    for (auto& t : tokens) {
      if (t.size() == 6 && t.compare(0, 3, "<0x") == 0 && t[5] == '>' && hexDigit(t[3]) >= 0 && hexDigit(t[4]) >= 0) {
        pending.push_back(static_cast<char>(hexDigit(t[3]) * 16 + hexDigit(t[4])));
        continue;
      }
      flush();
      out.push_back(std::move(t));
    }
    flush();
    return out;
  }
};

class FuseDecoder final : public Decoder {
 public:
  std::vector<std::string> decodeChain(std::vector<std::string> tokens) const override {
    std::string s;
    for (const auto& t : tokens) s += t;
    return {s};
  }
};

class StripDecoder final : public Decoder {
 public:
  StripDecoder(char32_t content, size_t start, size_t stop) : m_content(content), m_start(start), m_stop(stop) {}
  std::vector<std::string> decodeChain(std::vector<std::string> tokens) const override {
    for (auto& t : tokens) {
      std::vector<std::pair<size_t, size_t>> chars;  // (byte pos, len)
      std::vector<char32_t> cps;
      for (size_t k = 0; k < t.size();) {
        size_t len = 0;
        cps.push_back(decodeUtf8(t, k, len));
        chars.emplace_back(k, len);
        k += len;
      }
      size_t startCut = 0;
      for (size_t i = 0; i < m_start && i < cps.size(); ++i) {
        if (cps[i] != m_content) break;
        startCut = i + 1;
      }
      size_t stopCut = cps.size();
      for (size_t i = 0; i < m_stop && i < cps.size(); ++i) {
        const size_t idx = cps.size() - i - 1;
        if (cps[idx] != m_content) break;
        stopCut = idx;
      }
      if (stopCut < startCut) stopCut = startCut;
      const size_t b = startCut < chars.size() ? chars[startCut].first : t.size();
      const size_t e = stopCut < chars.size() ? chars[stopCut].first : t.size();
      t = t.substr(b, e - b);
    }
    return tokens;
  }

 private:
  char32_t m_content;
  size_t m_start, m_stop;
};

class ReplaceDecoder final : public Decoder {
 public:
  ReplaceDecoder(Pattern p, std::string content) : m_pattern(std::move(p)), m_content(std::move(content)) {}
  std::vector<std::string> decodeChain(std::vector<std::string> tokens) const override {
    for (auto& t : tokens) {
      std::string s;
      for (const auto& piece : m_pattern.findMatches(t)) {
        if (piece.isMatch) s += m_content;
        else s.append(t, piece.begin, piece.end - piece.begin);
      }
      t = std::move(s);
    }
    return tokens;
  }

 private:
  Pattern m_pattern;
  std::string m_content;
};

class BpeDecoder final : public Decoder {
 public:
  explicit BpeDecoder(std::string suffix) : m_suffix(std::move(suffix)) {}
  std::vector<std::string> decodeChain(std::vector<std::string> tokens) const override {
    for (size_t i = 0; i < tokens.size(); ++i) {
      if (m_suffix.empty()) continue;
      const std::string rep = i + 1 == tokens.size() ? "" : " ";
      std::string s;
      const auto& t = tokens[i];
      size_t pos = 0;
      for (size_t f = t.find(m_suffix); f != std::string::npos; f = t.find(m_suffix, pos)) {
        s.append(t, pos, f - pos);
        s += rep;
        pos = f + m_suffix.size();
      }
      s.append(t, pos, std::string::npos);
      tokens[i] = std::move(s);
    }
    return tokens;
  }

 private:
  std::string m_suffix;
};

class SequenceDecoder final : public Decoder {
 public:
  explicit SequenceDecoder(std::vector<std::unique_ptr<Decoder>> steps) : m_steps(std::move(steps)) {}
  std::vector<std::string> decodeChain(std::vector<std::string> tokens) const override {
    for (const auto& d : m_steps) tokens = d->decodeChain(std::move(tokens));
    return tokens;
  }

 private:
  std::vector<std::unique_ptr<Decoder>> m_steps;
};

char32_t oneChar(const std::string& s, const std::string& what, const std::string& where) {
  size_t len = 0;
  if (s.empty() || (decodeUtf8(s, 0, len), len != s.size()))
    throw InputError(fmt::format("{}: \"{}\" must be one character, found '{}'", where, what, s));
  return decodeUtf8(s, 0, len);
}

}  // namespace

std::unique_ptr<Decoder> makeDecoder(const nlohmann::json& j, const std::string& where) {
  const std::string type = componentType(j, where);
  const std::string at = fmt::format("{} ({})", where, type);
  if (type == "ByteLevel") return std::make_unique<ByteLevelDecoder>();
  if (type == "Metaspace") {
    bool prepend = true;
    if (const auto it = j.find("prepend_scheme"); it != j.end() && it->is_string()) prepend = it->get<std::string>() != "never";
    else if (j.contains("add_prefix_space")) prepend = jsonBool(j, "add_prefix_space", true, at);
    return std::make_unique<MetaspaceDecoder>(oneChar(jsonString(j, "replacement", at), "replacement", at), prepend);
  }
  if (type == "ByteFallback") return std::make_unique<ByteFallbackDecoder>();
  if (type == "Fuse") return std::make_unique<FuseDecoder>();
  if (type == "Strip")
    return std::make_unique<StripDecoder>(oneChar(jsonString(j, "content", at), "content", at), jsonSize(j, "start", 0, at),
                                          jsonSize(j, "stop", 0, at));
  if (type == "Replace") {
    if (!j.contains("pattern")) throw InputError(fmt::format("{}: missing \"pattern\"", at));
    return std::make_unique<ReplaceDecoder>(makePattern(j.at("pattern"), at + ".pattern"), jsonString(j, "content", at));
  }
  if (type == "BPEDecoder") {
    const auto it = j.find("suffix");
    return std::make_unique<BpeDecoder>(it != j.end() && it->is_string() ? it->get<std::string>() : std::string("</w>"));
  }
  if (type == "Sequence") {
    std::vector<std::unique_ptr<Decoder>> steps;
    const auto& arr = jsonArray(j, "decoders", at);
    for (size_t i = 0; i < arr.size(); ++i) steps.push_back(makeDecoder(arr[i], fmt::format("{}.decoders[{}]", where, i)));
    return std::make_unique<SequenceDecoder>(std::move(steps));
  }
  throw UnsupportedError(fmt::format(
      "{}: unsupported decoder type '{}' (supported: ByteLevel, Metaspace, ByteFallback, Fuse, Strip, Replace, "
      "BPEDecoder, Sequence)",
      where, type));
}

}  // namespace mechscope::tok
