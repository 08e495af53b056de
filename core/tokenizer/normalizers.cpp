// Normalizers: NFC/NFD/NFKC/NFKD, Lowercase, Strip, StripAccents, Prepend, Append, Replace, Sequence.
#include <fmt/format.h>

#include "core/tokenizer/components.hpp"
#include "core/tokenizer/json_util.hpp"
#include "core/tokenizer/unicode_utils.hpp"

namespace mechscope::tok {
namespace {

class UnicodeNormalizer final : public Normalizer {
 public:
  explicit UnicodeNormalizer(int form) : m_form(form) {}
  void normalize(NormalizedString& s) const override {
    switch (m_form) {
      case 0: s.nfc(); break;
      case 1: s.nfd(); break;
      case 2: s.nfkc(); break;
      default: s.nfkd(); break;
    }
  }

 private:
  int m_form;
};

class LowercaseNormalizer final : public Normalizer {
 public:
  void normalize(NormalizedString& s) const override { s.lowercase(); }
};

class StripNormalizer final : public Normalizer {
 public:
  StripNormalizer(bool left, bool right) : m_left(left), m_right(right) {}
  void normalize(NormalizedString& s) const override { s.strip(m_left, m_right); }

 private:
  bool m_left, m_right;
};

bool notMark(char32_t c) { return !isMark(c); }

class StripAccentsNormalizer final : public Normalizer {
 public:
  void normalize(NormalizedString& s) const override { s.filter(&notMark); }
};

class PrependNormalizer final : public Normalizer {
 public:
  explicit PrependNormalizer(std::string p) : m_prepend(std::move(p)) {}
  void normalize(NormalizedString& s) const override {
    if (!s.empty()) s.prepend(m_prepend);
  }

 private:
  std::string m_prepend;
};

class AppendNormalizer final : public Normalizer {
 public:
  explicit AppendNormalizer(std::string a) : m_append(std::move(a)) {}
  void normalize(NormalizedString& s) const override {
    if (!s.empty()) s.append(m_append);
  }

 private:
  std::string m_append;
};

class ReplaceNormalizer final : public Normalizer {
 public:
  ReplaceNormalizer(Pattern p, std::string content) : m_pattern(std::move(p)), m_content(std::move(content)) {}
  void normalize(NormalizedString& s) const override { s.replace(m_pattern, m_content); }

 private:
  Pattern m_pattern;
  std::string m_content;
};

class SequenceNormalizer final : public Normalizer {
 public:
  explicit SequenceNormalizer(std::vector<std::unique_ptr<Normalizer>> steps) : m_steps(std::move(steps)) {}
  void normalize(NormalizedString& s) const override {
    for (const auto& n : m_steps) n->normalize(s);
  }

 private:
  std::vector<std::unique_ptr<Normalizer>> m_steps;
};

}  // namespace

std::string componentType(const nlohmann::json& j, const std::string& where) {
  if (!j.is_object()) throw InputError(fmt::format("{}: expected an object, found {}", where, j.type_name()));
  return jsonString(j, "type", where);
}

Pattern makePattern(const nlohmann::json& j, const std::string& where) {
  if (j.is_object()) {
    if (const auto it = j.find("String"); it != j.end() && it->is_string()) return Pattern::literal(it->get<std::string>());
    if (const auto it = j.find("Regex"); it != j.end() && it->is_string()) return Pattern::regex(it->get<std::string>(), where);
  }
  throw InputError(fmt::format("{}: expected a pattern {{\"String\": ...}} or {{\"Regex\": ...}}, found {}", where, j.dump()));
}

std::unique_ptr<Normalizer> makeNormalizer(const nlohmann::json& j, const std::string& where) {
  const std::string type = componentType(j, where);
  const std::string at = fmt::format("{} ({})", where, type);
  if (type == "NFC") return std::make_unique<UnicodeNormalizer>(0);
  if (type == "NFD") return std::make_unique<UnicodeNormalizer>(1);
  if (type == "NFKC") return std::make_unique<UnicodeNormalizer>(2);
  if (type == "NFKD") return std::make_unique<UnicodeNormalizer>(3);
  if (type == "Lowercase") return std::make_unique<LowercaseNormalizer>();
  if (type == "Strip")
    return std::make_unique<StripNormalizer>(jsonBool(j, "strip_left", true, at), jsonBool(j, "strip_right", true, at));
  if (type == "StripAccents") return std::make_unique<StripAccentsNormalizer>();
  if (type == "Prepend") return std::make_unique<PrependNormalizer>(jsonString(j, "prepend", at));
  if (type == "Append") return std::make_unique<AppendNormalizer>(jsonString(j, "append", at));
  if (type == "Replace") {
    if (!j.contains("pattern")) throw InputError(fmt::format("{}: missing \"pattern\"", at));
    return std::make_unique<ReplaceNormalizer>(makePattern(j.at("pattern"), at + ".pattern"), jsonString(j, "content", at));
  }
  if (type == "Sequence") {
    std::vector<std::unique_ptr<Normalizer>> steps;
    const auto& arr = jsonArray(j, "normalizers", at);
    for (size_t i = 0; i < arr.size(); ++i)
      steps.push_back(makeNormalizer(arr[i], fmt::format("{}.normalizers[{}]", where, i)));
    return std::make_unique<SequenceNormalizer>(std::move(steps));
  }
  throw UnsupportedError(fmt::format(
      "{}: unsupported normalizer type '{}' (supported: NFC, NFD, NFKC, NFKD, Lowercase, Strip, StripAccents, "
      "Prepend, Append, Replace, Sequence)",
      where, type));
}

}  // namespace mechscope::tok
