// Constraint attention in the plugin shape: the input preparation (constraint spans as characters, a
// substring or tokens; a teacher-forced or generated response; the answer marker) lives here once, so
// `mechscope-cli constraint-attention`, the GUI's Constraint panel and batch plans prepare it the same way.
#include <ATen/ATen.h>

#include <fstream>
#include <set>

#include <fmt/format.h>

#include "analysis/constraint/constraint_attention.hpp"
#include "core/common/errors.hpp"
#include "core/model/generate.hpp"
#include "core/model/hooked_transformer.hpp"
#include "core/tokenizer/tokenizer.hpp"

namespace mechscope::analysis {

namespace {

/// Code points in the first `bytes` bytes of UTF-8 `s`.
size_t codePoints(const std::string& s, size_t bytes) {
  size_t n = 0;
  for (size_t i = 0; i < bytes && i < s.size(); ++i) n += (static_cast<unsigned char>(s[i]) & 0xC0) != 0x80;
  return n;
}

/// The prompt's ids, its length and the constraint positions from the three ways of naming them.
struct PreparedPrompt {
  std::vector<int64_t> ids;
  int64_t promptLen = 0;
  std::set<int64_t> constraint;
};

PreparedPrompt preparePrompt(const PluginInputs& in, const ParamValues& params) {
  PreparedPrompt out;
  const auto charSpans = params.texts("constraint"), texts = params.texts("constraint_text");
  if (in.texts.empty()) {
    if (in.rows.size() != 1) throw InputError(fmt::format("constraint-attention: the input holds {} rows; give one sequence", in.rows.size()));
    if (!charSpans.empty() || !texts.empty())
      throw InputError("constraint-attention: --constraint/--constraint-text need a text prompt; with --token-ids use --constraint-tokens");
    out.ids = in.rows[0];
    const int64_t start = params.integer("response_start");
    out.promptLen = start >= 0 ? start : static_cast<int64_t>(out.ids.size());
  } else {
    if (in.texts.size() > 1) throw InputError("constraint-attention: give one --prompt (constraint spans belong to one prompt)");
    if (!in.tokenizer) throw InputError("constraint-attention: the model folder has no tokenizer.json; use --token-ids");
    const std::string& prompt = in.texts[0];
    const Encoding enc = in.tokenizer->encode(prompt, in.addSpecialTokens);
    out.ids = enc.ids;
    out.promptLen = static_cast<int64_t>(out.ids.size());
    const size_t nChars = codePoints(prompt, prompt.size());
    auto addChars = [&](size_t a, size_t b, const std::string& what) {
      if (a >= b || b > nChars) throw InputError(fmt::format("constraint-attention: {} {}:{} is not inside the prompt's {} characters", what, a, b, nChars));
      const auto toks = tokensInCharSpan(enc, a, b);
      if (toks.empty()) throw InputError(fmt::format("constraint-attention: {} {}:{} covers no token", what, a, b));
      for (size_t t : toks) out.constraint.insert(static_cast<int64_t>(t));
    };
    for (size_t i = 0; i < charSpans.size(); ++i) {      const auto [a, b] = parseRangeText(charSpans[i], "constraint-attention --constraint");
      if (a < 0 || b < 0) throw InputError(fmt::format("constraint-attention: --constraint {} has a negative bound", charSpans[i]));
      addChars(static_cast<size_t>(a), static_cast<size_t>(b), "--constraint");
    }
    for (const auto& t : texts) {
      const auto at = prompt.find(t);
      if (t.empty() || at == std::string::npos) throw InputError(fmt::format("constraint-attention: --constraint-text '{}' does not occur in the prompt", t));
      addChars(codePoints(prompt, at), codePoints(prompt, at + t.size()), "--constraint-text");
    }
  }
  for (const auto& s : params.texts("constraint_tokens")) {
    const auto [a, b] = parseRangeText(s, "constraint-attention --constraint-tokens");
    if (a < 0 || b <= a || b > out.promptLen)
      throw InputError(fmt::format("constraint-attention: --constraint-tokens {} is not inside the {} prompt tokens", s, out.promptLen));
    for (int64_t i = a; i < b; ++i) out.constraint.insert(i);
  }
  if (out.constraint.empty())
    throw InputError("constraint-attention: give the constraint: --constraint-text TEXT, --constraint a:b (characters) or --constraint-tokens a:b");
  return out;
}

/// The response's ids and the index of its first answer token (teacher-forced --response or greedy --generate).
std::pair<std::vector<int64_t>, int64_t> prepareResponse(const PluginInputs& in, const ParamValues& params, const std::vector<int64_t>& promptIds,
                                                         const RunContext* ctx) {
  const std::string response = params.text("response"), marker = params.text("answer_marker");
  const int64_t generateN = params.integer("generate");
  if (!response.empty() && generateN > 0) throw InputError("constraint-attention: --response and --generate exclude each other");
  std::vector<int64_t> ids;
  int64_t answerFrom = 0;
  if (!response.empty()) {
    if (!in.tokenizer) throw InputError("constraint-attention: --response needs tokenizer.json");
    const Encoding r = in.tokenizer->encode(response, false);
    ids = r.ids;
    if (!marker.empty()) {
      const auto at = response.find(marker);
      if (at == std::string::npos) throw InputError(fmt::format("constraint-attention: --answer-marker '{}' does not occur in the response", marker));
      const size_t cp = codePoints(response, at + marker.size());
      answerFrom = static_cast<int64_t>(r.ids.size());
      for (size_t i = 0; i < r.offsets.size(); ++i)
        if (r.offsets[i].first >= cp) {
          answerFrom = static_cast<int64_t>(i);
          break;
        }
    }
  } else if (generateN > 0) {
    GenerateOptions g;
    g.maxNewTokens = static_cast<int>(generateN);
    g.stopTokens = in.model->config().eosTokenIds;
    ids = generate(*in.model, promptIds, g, nullptr, ctx).generated;
    if (!marker.empty()) {
      if (!in.tokenizer) throw InputError("constraint-attention: --answer-marker needs tokenizer.json");
      answerFrom = static_cast<int64_t>(ids.size());
      for (size_t k = 0; k < ids.size(); ++k)
        if (in.tokenizer->decode({ids.begin(), ids.begin() + static_cast<std::ptrdiff_t>(k + 1)}).find(marker) != std::string::npos) {
          answerFrom = static_cast<int64_t>(k + 1);
          break;
        }
    }
  }
  return {ids, answerFrom};
}

std::optional<std::vector<double>> baselineBeta(const ParamValues& params) {
  if (!params.given("compare_json")) return std::nullopt;
  const std::string path = params.text("compare_json");
  std::ifstream in(path);
  if (!in) throw InputError(fmt::format("{}: cannot open --compare-json", path));
  try {
    return nlohmann::json::parse(in).at("beta").get<std::vector<double>>();
  } catch (const nlohmann::json::exception& e) {
    throw InputError(fmt::format("{}: expected a constraint-attention JSON with \"beta\" ({})", path, e.what()));
  }
}

AnalysisResult runConstraintPlugin(const PluginInputs& in, const ParamValues& params, const RunContext* ctx) {
  PreparedPrompt p = preparePrompt(in, params);
  const auto baseline = baselineBeta(params);
  const auto [responseIds, answerFrom] = prepareResponse(in, params, p.ids, ctx);
  std::vector<int64_t> ids = p.ids;
  ids.insert(ids.end(), responseIds.begin(), responseIds.end());
  std::vector<int64_t> answerRows;
  const int64_t total = static_cast<int64_t>(ids.size()), firstAnswer = p.promptLen + answerFrom;
  if (firstAnswer < total && (!responseIds.empty() || params.integer("response_start") >= 0))
    for (int64_t q = std::max<int64_t>(firstAnswer, 1); q < total; ++q) answerRows.push_back(q - 1);
  (void)in.model->checkTokens(at::tensor(at::ArrayRef<int64_t>(ids), at::kLong).unsqueeze(0));
  const auto result = runConstraintAttention(*in.model, ids, {p.constraint.begin(), p.constraint.end()}, answerRows, params.flag("materialize"), ctx);
  AnalysisResult out = constraintToResult(result, baseline);
  out.json["prompt_tokens"] = p.promptLen;
  out.json["response_ids"] = responseIds;
  out.json["tokens"] = total;
  out.json["constraint_size"] = static_cast<int64_t>(result.constraintPositions.size());
  out.json["answer_steps"] = static_cast<int64_t>(answerRows.size());
  if (in.tokenizer) {
    nlohmann::json labels = nlohmann::json::array();
    for (int64_t id : ids) labels.push_back(in.tokenizer->displayToken(id));
    out.json["token_labels"] = std::move(labels);
  }
  return out;
}

}  // namespace

AnalysisPlugin constraintAttentionPlugin() {
  AnalysisPlugin p = makePlugin("constraint-attention", "Constraint",
                                "attention mass on constraint spans per layer and answer step (alpha, beta)",
                                PluginInput::TokenRows, runConstraintPlugin);
  auto& d = p.descriptor;
  d.oneSequence = true;
  ParamInfo gen = makeParam("generate", ParamType::Int, "--generate", "generate N tokens greedily, then analyse prompt + generation", "0");
  gen.minimum = 0;
  ParamInfo start = makeParam("response_start", ParamType::Int, "--response-start",
                              "with --token-ids: first response position (the rest is the prompt); -1: no response", "-1");
  start.minimum = -1;
  d.params = {makeParam("constraint", ParamType::RangeList, "--constraint", "constraint as a character range a:b of the prompt (code points; repeatable)"),
              makeParam("constraint_text", ParamType::StringList, "--constraint-text", "constraint as a substring of the prompt (first occurrence; repeatable)"),
              makeParam("constraint_tokens", ParamType::RangeList, "--constraint-tokens", "constraint as token positions a:b (repeatable)"),
              makeParam("response", ParamType::String, "--response", "response text, teacher-forced after the prompt"),
              gen,
              start,
              makeParam("answer_marker", ParamType::String, "--answer-marker", "answer steps start after this text in the response (default: whole response)"),
              makeParam("compare_json", ParamType::File, "--compare-json", "another run's JSON: adds delta_beta = beta(other) - beta(this)"),
              makeParam("materialize", ParamType::Bool, "--materialize", "read full attention patterns (hook_pattern) instead of the streaming probe")};
  d.figureKeys = {"alpha"};
  d.headlineKeys = {"tokens", "constraint_size", "answer_steps"};
  d.exampleArgs = {"--constraint-tokens", "2:3"};
  return p;
}

}  // namespace mechscope::analysis
