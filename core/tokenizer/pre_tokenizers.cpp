// Pre-tokenizers: ByteLevel, Split, Metaspace, Digits, Whitespace, WhitespaceSplit, Punctuation,
// BertPreTokenizer, Sequence.
#include <fmt/format.h>

#include "core/tokenizer/components.hpp"
#include "core/tokenizer/json_util.hpp"
#include "core/tokenizer/unicode_utils.hpp"

namespace mechscope::tok {
namespace {

const Pattern& gpt2Pattern() {
  static const Pattern p = Pattern::regex(R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)",
                                          "ByteLevel pre-tokenizer");
  return p;
}

SplitBehavior parseBehavior(const nlohmann::json& j, const std::string& where) {
  const std::string b = jsonString(j, "behavior", where);
  if (b == "Removed") return SplitBehavior::Removed;
  if (b == "Isolated") return SplitBehavior::Isolated;
  if (b == "MergedWithPrevious") return SplitBehavior::MergedWithPrevious;
  if (b == "MergedWithNext") return SplitBehavior::MergedWithNext;
  if (b == "Contiguous") return SplitBehavior::Contiguous;
  throw InputError(fmt::format("{}: unknown split behavior '{}' (expected Removed, Isolated, MergedWithPrevious, "
                               "MergedWithNext or Contiguous)",
                               where, b));
}

class ByteLevelPreTokenizer final : public PreTokenizer {
 public:
  ByteLevelPreTokenizer(bool addPrefixSpace, bool useRegex) : m_addPrefixSpace(addPrefixSpace), m_useRegex(useRegex) {}
  void preTokenize(PreTokenized& p) const override {
    p.split([&](NormalizedString s) {
      if (m_addPrefixSpace && (s.get().empty() || s.get()[0] != ' ')) s.prepend(" ");
      if (m_useRegex) return s.split(gpt2Pattern(), SplitBehavior::Isolated);
      return std::vector<NormalizedString>{std::move(s)};
    });
    for (auto& s : p.splits)
      if (!s.tokens) s.normalized.byteLevel();
  }

 private:
  bool m_addPrefixSpace, m_useRegex;
};

class SplitPreTokenizer final : public PreTokenizer {
 public:
  SplitPreTokenizer(Pattern pattern, SplitBehavior behavior, bool invert)
      : m_pattern(std::move(pattern)), m_behavior(behavior), m_invert(invert) {}
  void preTokenize(PreTokenized& p) const override {
    p.split([&](NormalizedString s) { return s.split(m_pattern, m_behavior, m_invert); });
  }

 private:
  Pattern m_pattern;
  SplitBehavior m_behavior;
  bool m_invert;
};

enum class PrependScheme { Always, Never, First };

class MetaspacePreTokenizer final : public PreTokenizer {
 public:
  MetaspacePreTokenizer(char32_t replacement, PrependScheme scheme, bool split)
      : m_scheme(scheme), m_split(split) {
    appendUtf8(m_replacement, replacement);
    const char32_t r = replacement;
    m_splitPattern = Pattern::predicate([r](char32_t c) { return c == r; });
  }
  void preTokenize(PreTokenized& p) const override {
    static const Pattern space = Pattern::literal(" ");
    p.split([&](NormalizedString s) {
      s.replace(space, m_replacement);
      const bool startsWith = s.get().compare(0, m_replacement.size(), m_replacement) == 0;
      if (m_scheme == PrependScheme::Always && !startsWith) s.prepend(m_replacement);
      if (m_scheme == PrependScheme::First && !startsWith && s.offsetsOriginal().first == 0) s.prepend(m_replacement);
      if (m_split) return s.split(m_splitPattern, SplitBehavior::MergedWithNext);
      return std::vector<NormalizedString>{std::move(s)};
    });
  }

 private:
  PrependScheme m_scheme;
  bool m_split;
  std::string m_replacement;
  Pattern m_splitPattern;
};

class PredicatePreTokenizer final : public PreTokenizer {
 public:
  PredicatePreTokenizer(Pattern pattern, SplitBehavior behavior, bool invert = false)
      : m_pattern(std::move(pattern)), m_behavior(behavior), m_invert(invert) {}
  void preTokenize(PreTokenized& p) const override {
    p.split([&](NormalizedString s) { return s.split(m_pattern, m_behavior, m_invert); });
  }

 private:
  Pattern m_pattern;
  SplitBehavior m_behavior;
  bool m_invert;
};

class SequencePreTokenizer final : public PreTokenizer {
 public:
  explicit SequencePreTokenizer(std::vector<std::unique_ptr<PreTokenizer>> steps) : m_steps(std::move(steps)) {}
  void preTokenize(PreTokenized& p) const override {
    for (const auto& s : m_steps) s->preTokenize(p);
  }

 private:
  std::vector<std::unique_ptr<PreTokenizer>> m_steps;
};

}  // namespace

std::unique_ptr<PreTokenizer> makePreTokenizer(const nlohmann::json& j, const std::string& where) {
  const std::string type = componentType(j, where);
  const std::string at = fmt::format("{} ({})", where, type);
  if (type == "ByteLevel")
    return std::make_unique<ByteLevelPreTokenizer>(jsonBool(j, "add_prefix_space", true, at), jsonBool(j, "use_regex", true, at));
  if (type == "Split") {
    if (!j.contains("pattern")) throw InputError(fmt::format("{}: missing \"pattern\"", at));
    return std::make_unique<SplitPreTokenizer>(makePattern(j.at("pattern"), at + ".pattern"), parseBehavior(j, at),
                                               jsonBool(j, "invert", false, at));
  }
  if (type == "Metaspace") {
    const std::string rep = jsonString(j, "replacement", at);
    size_t len = 0;
    if (rep.empty() || decodeUtf8(rep, 0, len) == 0 || len != rep.size())
      throw InputError(fmt::format("{}: \"replacement\" must be one character, found '{}'", at, rep));
    PrependScheme scheme = PrependScheme::Always;
    if (const auto it = j.find("prepend_scheme"); it != j.end() && it->is_string()) {
      const auto s = it->get<std::string>();
      if (s == "always") scheme = PrependScheme::Always;
      else if (s == "never") scheme = PrependScheme::Never;
      else if (s == "first") scheme = PrependScheme::First;
      else throw InputError(fmt::format("{}: unknown prepend_scheme '{}' (expected always, never or first)", at, s));
    } else if (j.contains("add_prefix_space")) {
      scheme = jsonBool(j, "add_prefix_space", true, at) ? PrependScheme::Always : PrependScheme::Never;
    }
    return std::make_unique<MetaspacePreTokenizer>(decodeUtf8(rep, 0, len), scheme, jsonBool(j, "split", true, at));
  }
  if (type == "Digits") {
    const bool individual = jsonBool(j, "individual_digits", false, at);
    return std::make_unique<PredicatePreTokenizer>(Pattern::predicate(&isNumeric),
                                                   individual ? SplitBehavior::Isolated : SplitBehavior::Contiguous);
  }
  if (type == "Whitespace")
    return std::make_unique<PredicatePreTokenizer>(Pattern::regex(R"(\w+|[^\w\s]+)", at), SplitBehavior::Removed, true);
  if (type == "WhitespaceSplit")
    return std::make_unique<PredicatePreTokenizer>(Pattern::predicate(&isWhitespace), SplitBehavior::Removed);
  if (type == "Punctuation") {
    const SplitBehavior b = j.contains("behavior") ? parseBehavior(j, at) : SplitBehavior::Isolated;
    return std::make_unique<PredicatePreTokenizer>(Pattern::predicate(&isPunctuation), b);
  }
  if (type == "BertPreTokenizer") {
    std::vector<std::unique_ptr<PreTokenizer>> steps;
    steps.push_back(std::make_unique<PredicatePreTokenizer>(Pattern::predicate(&isWhitespace), SplitBehavior::Removed));
    steps.push_back(std::make_unique<PredicatePreTokenizer>(Pattern::predicate(&isPunctuation), SplitBehavior::Isolated));
    return std::make_unique<SequencePreTokenizer>(std::move(steps));
  }
  if (type == "Sequence") {
    std::vector<std::unique_ptr<PreTokenizer>> steps;
    const auto& arr = jsonArray(j, "pretokenizers", at);
    for (size_t i = 0; i < arr.size(); ++i)
      steps.push_back(makePreTokenizer(arr[i], fmt::format("{}.pretokenizers[{}]", where, i)));
    return std::make_unique<SequencePreTokenizer>(std::move(steps));
  }
  throw UnsupportedError(fmt::format(
      "{}: unsupported pre-tokenizer type '{}' (supported: ByteLevel, Split, Metaspace, Digits, Whitespace, "
      "WhitespaceSplit, Punctuation, BertPreTokenizer, Sequence)",
      where, type));
}

}  // namespace mechscope::tok
