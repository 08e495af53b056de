// Post-processors: ByteLevel (offset trimming), TemplateProcessing, RobertaProcessing, BertProcessing, Sequence.
#include <fmt/format.h>

#include "core/tokenizer/components.hpp"
#include "core/tokenizer/json_util.hpp"
#include "core/tokenizer/unicode_utils.hpp"

namespace mechscope::tok {

void trimByteLevelOffsets(RawEncoding& e, bool addPrefixSpace) {
  const char32_t g = byteToChar(' ');
  auto isSpace = [g](char32_t c) { return c == g || isWhitespace(c); };
  for (size_t i = 0; i < e.tokens.size(); ++i) {
    const std::string& t = e.tokens[i];
    std::vector<char32_t> chars;
    for (size_t k = 0; k < t.size();) {
      size_t len = 0;
      chars.push_back(decodeUtf8(t, k, len));
      k += len;
    }
    size_t leading = 0, trailing = 0;
    while (leading < chars.size() && isSpace(chars[leading])) ++leading;
    while (trailing < chars.size() && isSpace(chars[chars.size() - 1 - trailing])) ++trailing;
    auto& [b, en] = e.offsets[i];
    if (leading > 0) {
      const bool isFirst = i == 0 || b == 0;
      if (isFirst && addPrefixSpace && leading == 1) leading = 0;
      b = std::min(b + leading, en);
    }
    if (trailing > 0 && en >= trailing) en = std::max(en - trailing, b);
  }
}

namespace {

class ByteLevelProcessor final : public PostProcessor {
 public:
  ByteLevelProcessor(bool trim, bool addPrefixSpace) : m_trim(trim), m_addPrefixSpace(addPrefixSpace) {}
  void process(RawEncoding& e, bool) const override {
    if (m_trim) trimByteLevelOffsets(e, m_addPrefixSpace);
  }

 private:
  bool m_trim, m_addPrefixSpace;
};

struct SpecialPiece {
  std::vector<int64_t> ids;
  std::vector<std::string> tokens;
};

// Prepend / append special pieces around the sequence (offsets (0, 0), as tokenizers reports them).
void wrap(RawEncoding& e, const std::vector<SpecialPiece>& before, const std::vector<SpecialPiece>& after) {
  RawEncoding out;
  auto add = [&](const SpecialPiece& p) {
    for (size_t k = 0; k < p.ids.size(); ++k) {
      out.ids.push_back(p.ids[k]);
      out.tokens.push_back(k < p.tokens.size() ? p.tokens[k] : std::string());
      out.offsets.emplace_back(0, 0);
    }
  };
  for (const auto& p : before) add(p);
  out.ids.insert(out.ids.end(), e.ids.begin(), e.ids.end());
  out.tokens.insert(out.tokens.end(), e.tokens.begin(), e.tokens.end());
  out.offsets.insert(out.offsets.end(), e.offsets.begin(), e.offsets.end());
  for (const auto& p : after) add(p);
  e = std::move(out);
}

class TemplateProcessor final : public PostProcessor {
 public:
  TemplateProcessor(std::vector<SpecialPiece> before, std::vector<SpecialPiece> after)
      : m_before(std::move(before)), m_after(std::move(after)) {}
  void process(RawEncoding& e, bool addSpecialTokens) const override {
    if (addSpecialTokens) wrap(e, m_before, m_after);
  }
  std::pair<std::vector<int64_t>, std::vector<int64_t>> specialIds() const override {
    std::pair<std::vector<int64_t>, std::vector<int64_t>> r;
    for (const auto& p : m_before) r.first.insert(r.first.end(), p.ids.begin(), p.ids.end());
    for (const auto& p : m_after) r.second.insert(r.second.end(), p.ids.begin(), p.ids.end());
    return r;
  }

 private:
  std::vector<SpecialPiece> m_before, m_after;
};

class ClsSepProcessor final : public PostProcessor {
 public:
  ClsSepProcessor(SpecialPiece cls, SpecialPiece sep, bool trim, bool addPrefixSpace)
      : m_cls(std::move(cls)), m_sep(std::move(sep)), m_trim(trim), m_addPrefixSpace(addPrefixSpace) {}
  void process(RawEncoding& e, bool addSpecialTokens) const override {
    if (m_trim) trimByteLevelOffsets(e, m_addPrefixSpace);
    if (addSpecialTokens) wrap(e, {m_cls}, {m_sep});
  }
  std::pair<std::vector<int64_t>, std::vector<int64_t>> specialIds() const override { return {m_cls.ids, m_sep.ids}; }

 private:
  SpecialPiece m_cls, m_sep;
  bool m_trim, m_addPrefixSpace;
};

class SequenceProcessor final : public PostProcessor {
 public:
  explicit SequenceProcessor(std::vector<std::unique_ptr<PostProcessor>> steps) : m_steps(std::move(steps)) {}
  void process(RawEncoding& e, bool addSpecialTokens) const override {
    for (const auto& s : m_steps) s->process(e, addSpecialTokens);
  }
  std::pair<std::vector<int64_t>, std::vector<int64_t>> specialIds() const override {
    std::pair<std::vector<int64_t>, std::vector<int64_t>> r;
    for (const auto& s : m_steps) {
      auto [b, a] = s->specialIds();
      r.first.insert(r.first.begin(), b.begin(), b.end());
      r.second.insert(r.second.end(), a.begin(), a.end());
    }
    return r;
  }

 private:
  std::vector<std::unique_ptr<PostProcessor>> m_steps;
};

SpecialPiece pairPiece(const nlohmann::json& j, const char* key, const std::string& where) {
  const auto it = j.find(key);
  if (it == j.end() || !it->is_array() || it->size() != 2 || !(*it)[0].is_string() || !(*it)[1].is_number_integer())
    throw InputError(fmt::format("{}: expected \"{}\": [token, id]", where, key));
  return SpecialPiece{{(*it)[1].get<int64_t>()}, {(*it)[0].get<std::string>()}};
}

std::unique_ptr<PostProcessor> makeTemplate(const nlohmann::json& j, const std::string& at) {
  const auto& single = jsonArray(j, "single", at);
  const auto specials = j.find("special_tokens");
  std::vector<SpecialPiece> before, after;
  bool seenSequence = false;
  for (size_t i = 0; i < single.size(); ++i) {
    const auto& piece = single[i];
    const std::string where = fmt::format("{}.single[{}]", at, i);
    if (piece.contains("Sequence")) {
      seenSequence = true;
      continue;
    }
    if (!piece.contains("SpecialToken")) throw InputError(fmt::format("{}: expected SpecialToken or Sequence", where));
    const std::string id = jsonString(piece.at("SpecialToken"), "id", where);
    if (specials == j.end() || !specials->is_object() || !specials->contains(id))
      throw InputError(fmt::format("{}: special token '{}' is not in \"special_tokens\"", where, id));
    const auto& spec = specials->at(id);
    SpecialPiece p;
    for (const auto& x : jsonArray(spec, "ids", where)) p.ids.push_back(x.get<int64_t>());
    for (const auto& x : jsonArray(spec, "tokens", where)) p.tokens.push_back(x.get<std::string>());
    (seenSequence ? after : before).push_back(std::move(p));
  }
  return std::make_unique<TemplateProcessor>(std::move(before), std::move(after));
}

}  // namespace

std::unique_ptr<PostProcessor> makePostProcessor(const nlohmann::json& j, const std::string& where) {
  const std::string type = componentType(j, where);
  const std::string at = fmt::format("{} ({})", where, type);
  if (type == "ByteLevel")
    return std::make_unique<ByteLevelProcessor>(jsonBool(j, "trim_offsets", true, at), jsonBool(j, "add_prefix_space", true, at));
  if (type == "TemplateProcessing") return makeTemplate(j, at);
  if (type == "RobertaProcessing")
    return std::make_unique<ClsSepProcessor>(pairPiece(j, "cls", at), pairPiece(j, "sep", at), jsonBool(j, "trim_offsets", true, at),
                                             jsonBool(j, "add_prefix_space", true, at));
  if (type == "BertProcessing")
    return std::make_unique<ClsSepProcessor>(pairPiece(j, "cls", at), pairPiece(j, "sep", at), false, false);
  if (type == "Sequence") {
    std::vector<std::unique_ptr<PostProcessor>> steps;
    const auto& arr = jsonArray(j, "processors", at);
    for (size_t i = 0; i < arr.size(); ++i)
      steps.push_back(makePostProcessor(arr[i], fmt::format("{}.processors[{}]", where, i)));
    return std::make_unique<SequenceProcessor>(std::move(steps));
  }
  throw UnsupportedError(fmt::format(
      "{}: unsupported post-processor type '{}' (supported: ByteLevel, TemplateProcessing, RobertaProcessing, "
      "BertProcessing, Sequence)",
      where, type));
}

}  // namespace mechscope::tok
