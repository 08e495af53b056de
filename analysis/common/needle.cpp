#include "analysis/common/needle.hpp"

#include <cmath>
#include <fstream>
#include <set>
#include <unordered_map>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "core/common/errors.hpp"

namespace mechscope::analysis {

std::vector<Needle> readNeedles(const std::filesystem::path& path) {
  std::ifstream in(path);
  if (!in) throw InputError(fmt::format("{}: cannot open the needles file", path.string()));
  std::vector<Needle> out;
  std::string line;
  int lineNo = 0;
  while (std::getline(in, line)) {
    ++lineNo;
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(line);
    } catch (const nlohmann::json::exception& e) {
      throw InputError(fmt::format("{}:{}: malformed JSON ({})", path.string(), lineNo, e.what()));
    }
    Needle n;
    for (auto [key, dst] : {std::pair<const char*, std::string*>{"needle", &n.needle}, {"question", &n.question},
                            {"real_needle", &n.realNeedle}}) {
      if (!j.is_object() || !j.contains(key) || !j[key].is_string())
        throw InputError(fmt::format("{}:{}: expected a string \"{}\"", path.string(), lineNo, key));
      *dst = j[key].get<std::string>();
    }
    out.push_back(std::move(n));
  }
  if (out.empty()) throw InputError(fmt::format("{}: no needles (expected JSON lines with needle/question/real_needle)", path.string()));
  return out;
}

std::vector<int64_t> roundedLinspace(double start, double end, int count) {
  std::vector<int64_t> out;
  for (int i = 0; i < count; ++i) {
    const double v = count == 1 ? start : start + (end - start) * i / (count - 1);
    out.push_back(static_cast<int64_t>(std::nearbyint(v)));  // default rounding mode: half to even, as numpy
  }
  return out;
}

bool endsSentence(std::string_view decodedToken) {
  const auto last = decodedToken.find_last_not_of(" \t\r\n");
  return last != std::string_view::npos && decodedToken[last] == '.';
}

void requireDecoder(const Tokenizer& tok, const std::string& what) {
  if (!tok.decodesText())
    throw InputError(fmt::format("{}: the tokenizer has no decoder (tokenizer.json \"decoder\" is missing or null) and its tokens carry "
                                 "byte-level/metaspace markers; needle placement and the newline stop need decoded text",
                                 what));
}

Haystack tokenizeHaystack(const Tokenizer& tok, const std::string& text) {
  requireDecoder(tok, "retrieval");
  Haystack h;
  h.ids = tok.encode(text, false).ids;
  if (h.ids.empty()) throw InputError("retrieval: the haystack text encodes to no tokens");
  std::unordered_map<int64_t, char> memo;  // a vocabulary's worth of decodes at most
  h.sentenceEnd.reserve(h.ids.size());
  for (const int64_t id : h.ids) {
    auto it = memo.find(id);
    if (it == memo.end()) it = memo.emplace(id, endsSentence(tok.decode({id}, false)) ? 1 : 0).first;
    h.sentenceEnd.push_back(it->second);
  }
  return h;
}

namespace {

std::string trimmed(const std::string& s) {
  const auto b = s.find_first_not_of(" \t\r\n");
  if (b == std::string::npos) return {};
  return s.substr(b, s.find_last_not_of(" \t\r\n") - b + 1);
}

bool isSpace(char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; }

/// Code points in UTF-8 `s` (the unit of Encoding::offsets).
size_t codePoints(std::string_view s) {
  size_t n = 0;
  for (const char c : s) n += (static_cast<unsigned char>(c) & 0xC0) != 0x80;
  return n;
}

}  // namespace

NeedleInput buildNeedleInput(const Tokenizer& tok, const Haystack& haystack, const Needle& needle, int64_t contextLength,
                             double depthPercent, const NeedleLayout& layout) {
  if (haystack.ids.empty() || haystack.sentenceEnd.size() != haystack.ids.size())
    throw InputError("retrieval: the haystack text encodes to no tokens");
  const std::string needleText = trimmed(needle.needle);
  const auto needleTokens = static_cast<int64_t>(tok.encode(needleText, false).ids.size());
  const int64_t budget = contextLength - layout.buffer;
  if (needleTokens > budget)
    throw InputError(fmt::format("retrieval: the needle \"{}\" is {} tokens, longer than context length {} minus --buffer {} ({} tokens)",
                                 needleText.size() > 40 ? needleText.substr(0, 40) + "..." : needleText, needleTokens, contextLength,
                                 layout.buffer, std::max<int64_t>(0, budget)));
  NeedleInput out;
  out.contextTokens = budget - needleTokens;
  const auto hs = static_cast<int64_t>(haystack.ids.size());
  out.haystackRepeated = out.contextTokens > hs;
  std::vector<int64_t> context(static_cast<size_t>(out.contextTokens));
  for (int64_t i = 0; i < out.contextTokens; ++i) context[static_cast<size_t>(i)] = haystack.ids[static_cast<size_t>(i % hs)];

  // The official rule: int(len × depth / 100), then back to just after a sentence-final token.
  int64_t ins = out.contextTokens;
  if (depthPercent < 100) {
    ins = static_cast<int64_t>(static_cast<double>(out.contextTokens) * (depthPercent / 100.0));
    while (ins > 0 && haystack.sentenceEnd[static_cast<size_t>((ins - 1) % hs)] == 0) --ins;
  }
  out.insertionToken = ins;

  // The prompt is text, encoded once (as the official code decodes the context and encodes
  // context + question): so every tokenizer sees the needle as ordinary mid-text words.
  const std::string prefix = tok.decode({context.begin(), context.begin() + ins}, false);
  const std::string full = tok.decode(context, false);
  const std::string suffix = full.compare(0, prefix.size(), prefix) == 0 ? full.substr(prefix.size())
                                                                         : tok.decode({context.begin() + ins, context.end()}, false);
  std::string text = prefix;
  if (!text.empty() && !isSpace(text.back())) text += ' ';
  const size_t needleChar = codePoints(text);
  text += needleText;
  if (!suffix.empty() && !isSpace(suffix.front())) text += ' ';
  text += suffix;
  std::string q = layout.questionTemplate;
  if (const auto at = q.find("{question}"); at != std::string::npos) q.replace(at, 10, needle.question);
  text += q;

  const Encoding enc = tok.encode(text, layout.addSpecialTokens);
  out.ids = enc.ids;
  out.insertedAt = static_cast<int64_t>(enc.ids.size());
  for (size_t i = 0; i < enc.offsets.size(); ++i)
    if (enc.offsets[i].second > needleChar) {
      out.insertedAt = static_cast<int64_t>(i);
      break;
    }
  out.span = findNeedleSpan(out.ids, tok.encode(needle.realNeedle, false).ids, layout.spanThreshold);
  return out;
}

std::optional<std::pair<int64_t, int64_t>> findNeedleSpan(const std::vector<int64_t>& ids, const std::vector<int64_t>& answer,
                                                          double threshold) {
  const auto m = static_cast<int64_t>(answer.size());
  const auto n = static_cast<int64_t>(ids.size());
  if (m == 0 || m > n) return std::nullopt;
  const std::set<int64_t> want(answer.begin(), answer.end());
  for (int64_t i = 0; i + m <= n; ++i) {
    std::set<int64_t> window(ids.begin() + i, ids.begin() + i + m);
    size_t hit = 0;
    for (int64_t t : want) hit += window.count(t);
    if (static_cast<double>(hit) / static_cast<double>(want.size()) > threshold) return std::make_pair(i, i + m);
  }
  return std::nullopt;
}

}  // namespace mechscope::analysis
