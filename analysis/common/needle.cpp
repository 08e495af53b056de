#include "analysis/common/needle.hpp"

#include <cmath>
#include <fstream>
#include <set>

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

std::vector<int64_t> periodTokenIds(const Tokenizer& tok) {
  std::set<int64_t> ids;
  for (const char* s : {".", " ."}) {
    const auto e = tok.encode(s, false);
    if (e.ids.size() == 1) ids.insert(e.ids.front());
  }
  return {ids.begin(), ids.end()};
}

NeedleInput buildNeedleInput(const Tokenizer& tok, const std::vector<int64_t>& haystack, const Needle& needle, int64_t contextLength,
                             double depthPercent, const NeedleLayout& layout) {
  if (haystack.empty()) throw InputError("retrieval: the haystack text encodes to no tokens");
  const std::vector<int64_t> needleIds = tok.encode(needle.needle, false).ids;
  const int64_t budget = std::max<int64_t>(0, contextLength - layout.buffer);
  const int64_t ctxLen = std::max<int64_t>(0, budget - static_cast<int64_t>(needleIds.size()));
  std::vector<int64_t> context;
  context.reserve(static_cast<size_t>(ctxLen));
  while (static_cast<int64_t>(context.size()) < ctxLen)
    context.push_back(haystack[context.size() % haystack.size()]);
  int64_t insertion = static_cast<int64_t>(context.size());
  if (depthPercent < 100) {
    insertion = static_cast<int64_t>(static_cast<double>(context.size()) * depthPercent / 100.0);
    const std::set<int64_t> periods(layout.periodIds.begin(), layout.periodIds.end());
    while (insertion > 0 && periods.count(context[static_cast<size_t>(insertion - 1)]) == 0) --insertion;
  }
  NeedleInput out;
  out.ids = layout.prefixIds;
  out.ids.insert(out.ids.end(), context.begin(), context.begin() + insertion);
  out.insertedAt = static_cast<int64_t>(out.ids.size());
  out.ids.insert(out.ids.end(), needleIds.begin(), needleIds.end());
  out.ids.insert(out.ids.end(), context.begin() + insertion, context.end());
  std::string q = layout.questionTemplate;
  const auto at = q.find("{question}");
  if (at != std::string::npos) q.replace(at, 10, needle.question);
  const auto qIds = tok.encode(q, false).ids;
  out.ids.insert(out.ids.end(), qIds.begin(), qIds.end());
  std::optional<std::pair<int64_t, int64_t>> span;
  for (const std::string& text : {needle.realNeedle, " " + needle.realNeedle}) {
    span = findNeedleSpan(out.ids, tok.encode(text, false).ids);
    if (span) break;
  }
  if (span) {
    out.needleStart = span->first;
    out.needleEnd = span->second;
  } else {
    out.needleStart = out.insertedAt;
    out.needleEnd = out.insertedAt + static_cast<int64_t>(needleIds.size());
    out.spanFromInsertion = true;
  }
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
