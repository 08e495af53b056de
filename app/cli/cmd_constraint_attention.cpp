// `mechscope-cli constraint-attention`: attention mass on constraint spans per layer and answer step
// (α, ᾱ, β, Δβ; docs/cli.md). Teacher-forced over --response, or over a greedy --generate N.
#include <ATen/ATen.h>

#include <fstream>
#include <iostream>
#include <memory>
#include <set>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "analysis/constraint/constraint_attention.hpp"
#include "app/cli/analysis_common_options.hpp"
#include "app/cli/command.hpp"
#include "core/common/errors.hpp"
#include "core/model/generate.hpp"

namespace mechscope::cli {
namespace {

struct ConstraintCliOptions {
  AnalysisCommonOptions common;
  std::vector<std::string> charSpans, texts, tokenSpans;
  std::string response;
  int generate = 0;
  int64_t responseStart = -1;
  std::string answerMarker;
  std::string compareJson;
};

/// Code points in the first `bytes` bytes of UTF-8 `s`.
size_t codePoints(const std::string& s, size_t bytes) {
  size_t n = 0;
  for (size_t i = 0; i < bytes && i < s.size(); ++i) n += (static_cast<unsigned char>(s[i]) & 0xC0) != 0x80;
  return n;
}

void runConstraintCommand(ConstraintCliOptions& o) {
  o.common.validate("constraint-attention");
  if (o.common.prompts.size() > 1) throw InputError("constraint-attention: give one --prompt (constraint spans belong to one prompt)");
  if (!o.response.empty() && o.generate > 0) throw InputError("constraint-attention: --response and --generate exclude each other");
  attachStderrProgress("constraint-attention");
  const LoadedModel m = loadAnalysisModel(o.common);
  std::vector<int64_t> ids;
  std::set<int64_t> constraint;
  int64_t promptLen = 0;
  if (!o.common.tokenIds.empty()) {
    const auto rows = readTokenIdRows(o.common.tokenIds);
    if (rows.size() != 1) throw InputError(fmt::format("constraint-attention: {} holds {} rows; give one sequence", o.common.tokenIds, rows.size()));
    if (!o.charSpans.empty() || !o.texts.empty())
      throw InputError("constraint-attention: --constraint/--constraint-text need a text prompt; with --token-ids use --constraint-tokens");
    ids = rows[0];
    promptLen = o.responseStart >= 0 ? o.responseStart : static_cast<int64_t>(ids.size());
  } else {
    if (!m.tokenizer) throw InputError(fmt::format("constraint-attention: no tokenizer.json in {}; use --token-ids", o.common.model));
    const std::string prompt = inputTexts(o.common).at(0);
    const Encoding enc = m.tokenizer->encode(prompt, !o.common.noPrependBos);
    ids = enc.ids;
    promptLen = static_cast<int64_t>(ids.size());
    const size_t nChars = codePoints(prompt, prompt.size());
    auto addChars = [&](size_t a, size_t b, const std::string& what) {
      if (a >= b || b > nChars) throw InputError(fmt::format("constraint-attention: {} {}:{} is not inside the prompt's {} characters", what, a, b, nChars));
      const auto toks = tokensInCharSpan(enc, a, b);
      if (toks.empty()) throw InputError(fmt::format("constraint-attention: {} {}:{} covers no token", what, a, b));
      for (size_t t : toks) constraint.insert(static_cast<int64_t>(t));
    };
    for (const auto& s : o.charSpans) {
      const auto [a, b] = parseRange(s, "constraint-attention --constraint");
      if (a < 0 || b < 0) throw InputError(fmt::format("constraint-attention: --constraint {} has a negative bound", s));
      addChars(static_cast<size_t>(a), static_cast<size_t>(b), "--constraint");
    }
    for (const auto& t : o.texts) {
      const auto at = prompt.find(t);
      if (t.empty() || at == std::string::npos) throw InputError(fmt::format("constraint-attention: --constraint-text '{}' does not occur in the prompt", t));
      addChars(codePoints(prompt, at), codePoints(prompt, at + t.size()), "--constraint-text");
    }
  }
  for (const auto& s : o.tokenSpans) {
    const auto [a, b] = parseRange(s, "constraint-attention --constraint-tokens");
    if (a < 0 || b <= a || b > promptLen)
      throw InputError(fmt::format("constraint-attention: --constraint-tokens {} is not inside the {} prompt tokens", s, promptLen));
    for (int64_t i = a; i < b; ++i) constraint.insert(i);
  }

  // Response (teacher-forced) and the answer tokens.
  std::vector<int64_t> responseIds;
  int64_t answerFrom = 0;  // index into the response tokens
  if (!o.response.empty()) {
    if (!m.tokenizer) throw InputError("constraint-attention: --response needs tokenizer.json");
    const Encoding r = m.tokenizer->encode(o.response, false);
    responseIds = r.ids;
    if (!o.answerMarker.empty()) {
      const auto at = o.response.find(o.answerMarker);
      if (at == std::string::npos) throw InputError(fmt::format("constraint-attention: --answer-marker '{}' does not occur in the response", o.answerMarker));
      const size_t cp = codePoints(o.response, at + o.answerMarker.size());
      answerFrom = static_cast<int64_t>(r.ids.size());
      for (size_t i = 0; i < r.offsets.size(); ++i)
        if (r.offsets[i].first >= cp) {
          answerFrom = static_cast<int64_t>(i);
          break;
        }
    }
  } else if (o.generate > 0) {
    GenerateOptions g;
    g.maxNewTokens = o.generate;
    g.stopTokens = m.model->config().eosTokenIds;
    const auto gen = generate(*m.model, ids, g, nullptr, &processContext());
    responseIds = gen.generated;
    if (!o.answerMarker.empty()) {
      if (!m.tokenizer) throw InputError("constraint-attention: --answer-marker needs tokenizer.json");
      answerFrom = static_cast<int64_t>(responseIds.size());
      for (size_t k = 0; k < responseIds.size(); ++k)
        if (m.tokenizer->decode({responseIds.begin(), responseIds.begin() + static_cast<std::ptrdiff_t>(k + 1)}).find(o.answerMarker) != std::string::npos) {
          answerFrom = static_cast<int64_t>(k + 1);
          break;
        }
    }
  }
  ids.insert(ids.end(), responseIds.begin(), responseIds.end());
  std::vector<int64_t> answerRows;
  const int64_t total = static_cast<int64_t>(ids.size());
  const int64_t firstAnswer = promptLen + answerFrom;
  if (firstAnswer < total && (!responseIds.empty() || o.responseStart >= 0))
    for (int64_t p = std::max<int64_t>(firstAnswer, 1); p < total; ++p) answerRows.push_back(p - 1);
  (void)m.model->checkTokens(at::tensor(at::ArrayRef<int64_t>(ids), at::kLong).unsqueeze(0));

  std::optional<std::vector<double>> baseline;
  if (!o.compareJson.empty()) {
    std::ifstream in(o.compareJson);
    if (!in) throw InputError(fmt::format("{}: cannot open --compare-json", o.compareJson));
    try {
      baseline = nlohmann::json::parse(in).at("beta").get<std::vector<double>>();
    } catch (const nlohmann::json::exception& e) {
      throw InputError(fmt::format("{}: expected a constraint-attention JSON with \"beta\" ({})", o.compareJson, e.what()));
    }
  }
  const auto result = analysis::runConstraintAttention(*m.model, ids, {constraint.begin(), constraint.end()}, answerRows,
                                                       o.common.materialize, &processContext());
  auto out = analysis::constraintToResult(result, baseline);
  out.json["prompt_tokens"] = promptLen;
  out.json["response_ids"] = responseIds;
  std::cout << fmt::format("constraint-attention: {} tokens, |C| = {}, {} answer steps\n", total, result.constraintPositions.size(), answerRows.size());
  writeAnalysisOutputs(o.common, out, m, o.common.materialize ? "materialized" : "probe");
}

const RegisterCommand reg_cmd_constraint_attention{"constraint-attention", 42, [](CLI::App& root) {
  auto o = std::make_shared<ConstraintCliOptions>();
  auto* sub = root.add_subcommand("constraint-attention", "Attention mass on constraint spans per layer and answer step (alpha, beta)");
  o->common.add(sub);
  sub->add_option("--constraint", o->charSpans, "Constraint as a character range a:b of the prompt (code points; repeatable)");
  sub->add_option("--constraint-text", o->texts, "Constraint as a substring of the prompt (first occurrence; repeatable)");
  sub->add_option("--constraint-tokens", o->tokenSpans, "Constraint as token positions a:b (repeatable)");
  sub->add_option("--response", o->response, "Response text, teacher-forced after the prompt");
  sub->add_option("--generate", o->generate, "Generate N tokens greedily, then analyse prompt + generation");
  sub->add_option("--response-start", o->responseStart, "With --token-ids: first response position (the rest is the prompt)");
  sub->add_option("--answer-marker", o->answerMarker, "Answer steps start after this text in the response (default: whole response)");
  sub->add_option("--compare-json", o->compareJson, "Another run's JSON: adds delta_beta = beta(other) - beta(this)");
  sub->callback([o, sub] {
    o->common.finishCommandLine(sub);
    runConstraintCommand(*o);
  });
}};

}  // namespace
}  // namespace mechscope::cli
