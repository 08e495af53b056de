// Tokenizer: loading tokenizer.json (+ tokenizer_config.json) and the encode / decode pipeline.
#include "core/tokenizer/tokenizer.hpp"

#include <fstream>
#include <sstream>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "core/common/errors.hpp"
#include "core/common/json_guard.hpp"
#include "core/tokenizer/json_util.hpp"
#include "core/tokenizer/tokenizer_impl.hpp"
#include "core/tokenizer/unicode_utils.hpp"

namespace mechscope {
namespace {

std::string readFile(const std::filesystem::path& p, const char* what) {
  std::ifstream in(p, std::ios::binary);
  if (!in) throw InputError(fmt::format("{}: cannot open {} for reading", p.string(), what));
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// A tokenizer_config.json token entry: "text" or {"content": "text", ...}; nullopt for null / absent.
std::optional<std::string> configToken(const nlohmann::json& cfg, const char* key) {
  const auto it = cfg.find(key);
  if (it == cfg.end() || it->is_null()) return std::nullopt;
  if (it->is_string()) return it->get<std::string>();
  if (it->is_object() && it->contains("content") && it->at("content").is_string()) return it->at("content").get<std::string>();
  return std::nullopt;
}

bool hasType(const nlohmann::json& j, const std::string& type, const char* listKey) {
  if (!j.is_object()) return false;
  if (j.value("type", std::string()) == type) return true;
  if (const auto it = j.find(listKey); it != j.end() && it->is_array())
    for (const auto& c : *it)
      if (hasType(c, type, listKey)) return true;
  return false;
}

std::shared_ptr<Tokenizer::Impl> load(const std::string& jsonText, const std::string& source, const nlohmann::json* config) {
  checkJsonLimits(jsonText, source, kTokenizerJsonLimits);  // size and nesting depth (json_guard.hpp)
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(jsonText);
  } catch (const nlohmann::json::exception& e) {
    throw InputError(fmt::format("{}: not valid JSON: {}", source, e.what()));
  }
  if (!j.is_object()) throw InputError(fmt::format("{}: expected a JSON object at the top level, found {}", source, j.type_name()));
  auto impl = std::make_shared<Tokenizer::Impl>();
  impl->source = source;

  // model
  const auto mit = j.find("model");
  if (mit == j.end() || !mit->is_object()) throw InputError(fmt::format("{}: model: missing \"model\" object", source));
  std::string modelType = mit->value("type", std::string());
  if (modelType.empty() && mit->contains("merges")) modelType = "BPE";  // old files omit the type
  if (modelType != "BPE" && modelType != "WordLevel")
    throw UnsupportedError(fmt::format("{}: model: unsupported model type '{}' (supported: BPE, WordLevel)", source,
                                       modelType.empty() ? std::string("(none)") : modelType));
  impl->model = std::make_unique<tok::BpeModel>(*mit, fmt::format("{}: model ({})", source, modelType));
  if (impl->model->hasDropout()) impl->unsupported.push_back("model.dropout (ignored: encoding is deterministic)");

  auto component = [&](const char* key) -> const nlohmann::json* {
    const auto it = j.find(key);
    return it == j.end() || it->is_null() ? nullptr : &*it;
  };
  if (const auto* n = component("normalizer")) impl->normalizer = tok::makeNormalizer(*n, source + ": normalizer");
  if (const auto* p = component("pre_tokenizer")) impl->preTokenizer = tok::makePreTokenizer(*p, source + ": pre_tokenizer");
  if (const auto* p = component("post_processor")) impl->postProcessor = tok::makePostProcessor(*p, source + ": post_processor");
  if (const auto* d = component("decoder")) impl->decoder = tok::makeDecoder(*d, source + ": decoder");
  if (component("truncation")) impl->unsupported.push_back("truncation (ignored: texts are never truncated)");
  if (component("padding")) impl->unsupported.push_back("padding (ignored: single sequences are never padded)");

  // added tokens
  std::vector<tok::AddedToken> added;
  if (const auto* a = component("added_tokens")) {
    if (!a->is_array()) throw InputError(fmt::format("{}: added_tokens: expected an array, found {}", source, a->type_name()));
    for (size_t i = 0; i < a->size(); ++i) {
      const auto& t = (*a)[i];
      const std::string where = fmt::format("{}: added_tokens[{}]", source, i);
      if (!t.is_object()) throw InputError(fmt::format("{}: expected an object, found {}", where, t.type_name()));
      tok::AddedToken at;
      at.content = tok::jsonString(t, "content", where);
      const auto idIt = t.find("id");
      if (idIt == t.end() || !idIt->is_number_integer() || idIt->get<int64_t>() < 0)
        throw InputError(fmt::format("{}: expected a non-negative integer \"id\"", where));
      at.id = impl->model->tokenToId(at.content).value_or(idIt->get<int64_t>());
      at.singleWord = tok::jsonBool(t, "single_word", false, where);
      at.lstrip = tok::jsonBool(t, "lstrip", false, where);
      at.rstrip = tok::jsonBool(t, "rstrip", false, where);
      at.special = tok::jsonBool(t, "special", false, where);
      at.normalized = tok::jsonBool(t, "normalized", !at.special, where);
      added.push_back(std::move(at));
    }
  }
  impl->added = tok::AddedVocabulary(std::move(added), impl->normalizer.get());

  // display style
  const nlohmann::json empty;
  const auto& pre = j.contains("pre_tokenizer") ? j["pre_tokenizer"] : empty;
  const auto& dec = j.contains("decoder") ? j["decoder"] : empty;
  if (hasType(pre, "ByteLevel", "pretokenizers") || hasType(dec, "ByteLevel", "decoders")) {
    impl->style = VocabStyle::ByteLevel;
  } else if (hasType(pre, "Metaspace", "pretokenizers") || hasType(dec, "Metaspace", "decoders") ||
             impl->model->tokenToId("\xE2\x96\x81").has_value()) {
    impl->style = VocabStyle::Metaspace;
  }

  // BOS / EOS: tokenizer_config.json, then the post-processor, then well-known names.
  auto idOf = [&](const std::string& s) -> std::optional<int64_t> {
    if (auto a = impl->added.idOf(s)) return a;
    return impl->model->tokenToId(s);
  };
  bool bosKnown = false, eosKnown = false;
  if (config && config->is_object()) {
    if (config->contains("bos_token")) {
      bosKnown = true;
      if (auto t = configToken(*config, "bos_token")) impl->bos = idOf(*t);
    }
    if (config->contains("eos_token")) {
      eosKnown = true;
      if (auto t = configToken(*config, "eos_token")) impl->eos = idOf(*t);
    }
  }
  if (impl->postProcessor) {
    const auto [before, after] = impl->postProcessor->specialIds();
    if (!bosKnown && !before.empty()) {
      impl->bos = before.front();
      bosKnown = true;
    }
    if (!eosKnown && !after.empty()) {
      impl->eos = after.back();
      eosKnown = true;
    }
  }
  if (!bosKnown)
    for (const char* name : {"<|begin_of_text|>", "<s>", "<bos>", "<|startoftext|>", "<|endoftext|>"})
      if ((impl->bos = idOf(name))) break;
  if (!eosKnown)
    for (const char* name : {"<|end_of_text|>", "</s>", "<eos>", "<|endoftext|>"})
      if ((impl->eos = idOf(name))) break;
  return impl;
}

// Byte offset → code-point index in `text`, as tokenizers' BytesToCharOffsetConverter.
class CharOffsets {
 public:
  explicit CharOffsets(std::string_view text) : m_map(text.size()) {
    size_t c = 0;
    for (size_t i = 0; i < text.size();) {
      const size_t len = std::min(tok::utf8SeqLen(static_cast<unsigned char>(text[i])), text.size() - i);
      for (size_t k = 0; k < len; ++k) m_map[i + k] = c;
      i += len;
      ++c;
    }
  }
  std::pair<size_t, size_t> convert(std::pair<size_t, size_t> o) const {
    if (o.first >= m_map.size()) return o;
    const size_t start = m_map[o.first];
    if (o.second < m_map.size()) return {start, m_map[o.second]};
    const size_t last = o.second >= 1 && o.second - 1 < m_map.size() ? m_map[o.second - 1] : start;
    return {start, last + 1};
  }

 private:
  std::vector<size_t> m_map;
};

}  // namespace

Tokenizer::Tokenizer(std::shared_ptr<const Impl> impl) : m_impl(std::move(impl)) {}

namespace {
/// load() with any JSON type mismatch it did not check itself turned into an InputError naming the file
/// (fuzz finding: a numeric "type" escaped as nlohmann::type_error).
std::shared_ptr<const Tokenizer::Impl> loadChecked(const std::string& text, const std::string& source,
                                                   const nlohmann::json* config) {
  try {
    return load(text, source, config);
  } catch (const nlohmann::json::exception& e) {
    throw InputError(fmt::format("{}: malformed tokenizer: {}", source, e.what()));
  }
}
}  // namespace

Tokenizer Tokenizer::fromJson(const std::string& jsonText, const std::string& sourceName) {
  return Tokenizer(loadChecked(jsonText, sourceName, nullptr));
}

Tokenizer Tokenizer::fromFile(const std::filesystem::path& path) {
  std::error_code ec;
  std::filesystem::path file = path;
  if (std::filesystem::is_directory(path, ec)) file = path / "tokenizer.json";
  if (!std::filesystem::exists(file, ec))
    throw InputError(fmt::format("{}: no such file (expected a tokenizer.json or a model folder holding one)", file.string()));
  const std::string text = readFile(file, "the tokenizer");
  nlohmann::json config;
  const auto cfgPath = file.parent_path() / "tokenizer_config.json";
  bool haveConfig = false;
  if (std::filesystem::exists(cfgPath, ec)) {
    try {
      const std::string cfgText = readFile(cfgPath, "the tokenizer config");
      checkJsonLimits(cfgText, cfgPath.string(), kConfigJsonLimits);
      config = nlohmann::json::parse(cfgText);
      haveConfig = true;
    } catch (const nlohmann::json::exception& e) {
      throw InputError(fmt::format("{}: not valid JSON: {}", cfgPath.string(), e.what()));
    }
  }
  return Tokenizer(loadChecked(text, file.string(), haveConfig ? &config : nullptr));
}

Encoding Tokenizer::encode(std::string_view rawText, bool addSpecialTokens) const {
  const Impl& im = *m_impl;
  if (rawText.size() > kMaxInputBytes)
    throw InputError(fmt::format("{}: text of {} bytes is over the tokenizer's input limit of {} bytes (16 MiB); "
                                 "split it into smaller documents",
                                 im.source, rawText.size(), kMaxInputBytes));
  const std::string text = tok::sanitizeUtf8(rawText);
  tok::PreTokenized p;
  p.splits.push_back(tok::Split{tok::NormalizedString(text), std::nullopt});
  im.added.extractAndNormalize(p, im.normalizer.get());
  if (im.preTokenizer) im.preTokenizer->preTokenize(p);

  tok::RawEncoding raw;
  const CharOffsets chars(text);
  for (auto& s : p.splits) {
    if (!s.tokens) s.tokens = im.model->tokenize(s.normalized.get());
    for (auto& t : *s.tokens) {
      const auto span = s.normalized.originalSpan(t.begin, t.end);
      const std::pair<size_t, size_t> bytes = span ? *span : std::pair<size_t, size_t>{t.begin, t.end};
      raw.ids.push_back(t.id);
      raw.tokens.push_back(std::move(t.value));
      raw.offsets.push_back(chars.convert(bytes));
    }
  }
  if (im.postProcessor) im.postProcessor->process(raw, addSpecialTokens);
  return Encoding{std::move(raw.ids), std::move(raw.tokens), std::move(raw.offsets)};
}

std::string Tokenizer::decode(const std::vector<int64_t>& ids, bool skipSpecialTokens) const {
  const Impl& im = *m_impl;
  std::vector<std::string> tokens;
  tokens.reserve(ids.size());
  for (const int64_t id : ids) {
    const std::string* t = im.tokenString(id);
    if (!t) continue;
    if (skipSpecialTokens && im.added.isSpecial(*t)) continue;
    tokens.push_back(*t);
  }
  if (im.decoder) {
    std::string out;
    for (const auto& piece : im.decoder->decodeChain(std::move(tokens))) out += piece;
    return out;
  }
  std::string out;
  for (size_t i = 0; i < tokens.size(); ++i) {
    if (i) out += ' ';
    out += tokens[i];
  }
  return out;
}

bool Tokenizer::decodesText() const { return m_impl->decoder != nullptr || m_impl->style == VocabStyle::Plain; }

std::optional<int64_t> Tokenizer::tokenToId(std::string_view token) const {
  if (auto a = m_impl->added.idOf(token)) return a;
  return m_impl->model->tokenToId(token);
}

std::string Tokenizer::idToToken(int64_t id) const {
  const std::string* t = m_impl->tokenString(id);
  return t ? *t : std::string();
}

int64_t Tokenizer::vocabSize() const {
  int64_t n = m_impl->model->idBound();
  for (const auto& t : m_impl->added.tokens()) n = std::max(n, t.id + 1);
  return n;
}

std::optional<int64_t> Tokenizer::bosId() const { return m_impl->bos; }
std::optional<int64_t> Tokenizer::eosId() const { return m_impl->eos; }
std::vector<std::string> Tokenizer::unsupportedComponents() const { return m_impl->unsupported; }

std::vector<size_t> tokensInCharSpan(const Encoding& encoding, size_t begin, size_t end) {
  std::vector<size_t> out;
  for (size_t i = 0; i < encoding.offsets.size(); ++i) {
    const auto [b, e] = encoding.offsets[i];
    if (b < e) {
      if (b < end && begin < e) out.push_back(i);
    } else if (b != 0 && b >= begin && b < end) {  // empty token inside the span; (0, 0) = added special token
      out.push_back(i);
    }
  }
  return out;
}

}  // namespace mechscope
