// Retrieval heads in the plugin shape (docs/metrics.md §1.2): `mechscope-cli retrieval`, the GUI's Retrieval
// panel and batch plans derive from this table. Input kind NiahGrid: without prompts the analysis builds the
// needle-in-a-haystack grid itself from its parameters (needles × lengths × depths over the haystack),
// resumable from a JSONL sidecar next to the output; with one prepared row (--token-ids, the GUI's prompt)
// it runs one test on the given answer span (--needle-span). Head masking (--mask-heads, --mask-top with the
// random-heads control) applies to both.
#include <ATen/ATen.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <tuple>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "analysis/common/analysis_plugin.hpp"
#include "analysis/common/needle.hpp"
#include "analysis/retrieval/head_control.hpp"
#include "analysis/retrieval/niah_grid.hpp"
#include "analysis/retrieval/resume.hpp"
#include "analysis/retrieval/retrieval.hpp"
#include "core/common/errors.hpp"
#include "core/tokenizer/tokenizer.hpp"

namespace mechscope::analysis {

namespace {

/// Token ids → text (empty: the tokenizer cannot decode text).
using TokenDecoder = std::function<std::string(const std::vector<int64_t>&)>;

/// The parameters as the run uses them.
struct RetrievalOptions {
  std::string needles, haystack, needleSpan, scores, resume, answer;
  std::pair<int64_t, int64_t> lengths{1000, 50000};
  int nLengths = 20, nDepths = 10, maskTop = 0, controlExcludeTop = 0;
  NeedleLayout layout{};
  RetrievalDecode decode{};
  bool successFilter = true, resumeGrid = true, control = true, stop = true;
  double successThreshold = 50.0, spanThreshold = 90.0, retrievalThreshold = 0.1;
  int64_t seed = 0;
  std::vector<int64_t> stopTokens{};
};

RetrievalOptions retrievalOptions(const ParamValues& v, const ModelConfig& cfg) {
  const auto optional = [&v](const char* key) { return v.given(key) ? v.text(key) : std::string(); };  // "" = not given
  RetrievalOptions o;
  o.needles = optional("needles");
  o.haystack = optional("haystack");
  o.lengths = v.range("lengths");
  o.nLengths = static_cast<int>(v.integer("n_lengths"));
  o.nDepths = static_cast<int>(v.integer("depths"));
  if (v.given("buffer")) o.layout.buffer = v.integer("buffer");
  if (v.given("question_template")) o.layout.questionTemplate = v.text("question_template");
  o.spanThreshold = v.number("span_threshold");
  o.decode.maxNewTokens = static_cast<int>(v.integer("max_new_tokens"));
  o.stopTokens = v.integers("stop_token");
  o.stop = !v.flag("no_stop");
  o.successFilter = v.flag("success_filter");
  o.successThreshold = v.number("success_threshold");
  o.needleSpan = optional("needle_span");
  o.answer = optional("answer");
  if (v.given("mask_heads")) o.decode.maskedHeads = v.heads("mask_heads", cfg.nLayers, cfg.nHeads);
  o.maskTop = static_cast<int>(v.integer("mask_top"));
  o.scores = optional("scores");
  o.retrievalThreshold = v.number("retrieval_threshold");
  o.controlExcludeTop = static_cast<int>(v.integer("control_exclude_top"));
  o.seed = v.integer("seed");
  o.control = v.flag("control");
  o.resume = optional("resume");
  o.resumeGrid = !v.flag("no_resume");
  o.decode.materialize = v.flag("materialize");
  return o;
}

std::filesystem::path retrievalResource(const std::string& rel) {
  if (const char* env = std::getenv("MECHSCOPE_RESOURCES")) return std::filesystem::path(env) / rel;
  return std::filesystem::path(MECHSCOPE_SOURCE_DIR) / "resources" / rel;
}

std::string readRetrievalText(const std::filesystem::path& p, const std::string& what) {
  std::ifstream in(p, std::ios::binary);
  if (!in) throw InputError(fmt::format("{}: cannot open the {} file", p.string(), what));
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

/// fnv1a64 of the model folder's tokenizer files (a resume key part).
std::string tokenizerFilesHash(const std::filesystem::path& folder) {
  std::string bytes;
  for (const char* f : {"tokenizer.json", "tokenizer_config.json"})
    if (std::filesystem::exists(folder / f)) bytes += readRetrievalText(folder / f, f);
  return fnv1a64Hex(bytes);
}

void say(const PluginInputs& in, const std::string& line) {
  if (in.note) in.note(line);
}

/// One condition's outcome for the side-by-side masking report.
nlohmann::json conditionSummary(const std::vector<HeadRef>& heads, const std::vector<RetrievalTestResult>& tests) {
  double rouge = 0;
  int64_t withRouge = 0, succeeded = 0;
  for (const auto& t : tests) {
    if (t.rouge1) {
      rouge += *t.rouge1;
      ++withRouge;
    }
    succeeded += t.success;
  }
  return {{"heads", headsJson(heads)},
          {"tests", tests.size()},
          {"success_rate", tests.empty() ? 0.0 : static_cast<double>(succeeded) / static_cast<double>(tests.size())},
          {"mean_rouge1_recall", withRouge > 0 ? nlohmann::json(rouge / static_cast<double>(withRouge) * 100.0) : nlohmann::json(nullptr)}};
}

/// Token ids → text with the tokenizer; empty when it has none that decodes text.
TokenDecoder textDecoder(const Tokenizer* tok) {
  TokenDecoder decodeText;
  if (tok && tok->decodesText()) decodeText = [tok](const std::vector<int64_t>& ids) { return tok->decode(ids, true); };
  return decodeText;
}

/// The stdout summary: tests run and used, heads scoring above 0.1 and, with --mask-top, the success rate
/// under each mask.
std::string retrievalSummary(const RetrievalOptions& o, const nlohmann::json& j, size_t tests, bool hasControl) {
  int above = 0;
  for (const auto& h : j.at("ranked_heads")) above += h.at("score").get<double>() > 0.1;
  std::string s = fmt::format("retrieval: {} tests, {} used, {} without an answer span, {} heads with score > 0.1", tests,
                              j.at("tests_used").get<int64_t>(), j.at("tests_without_span").get<int64_t>(), above);
  if (o.maskTop > 0)
    s += fmt::format("\nretrieval: masking top {}: success {:.2f}; {}", o.maskTop, j.at("mask_experiment").at("top_k").at("success_rate").get<double>(),
                     !hasControl ? std::string("no random control")
                                 : fmt::format("random {} (seed {}): success {:.2f}", o.maskTop, o.seed,
                                               j.at("mask_experiment").at("random_k").at("success_rate").get<double>()));
  return s;
}

/// Single-test mode: one prepared input (--token-ids) with its answer span (--needle-span), decoded and scored.
AnalysisResult runSingleTest(RetrievalOptions& o, const PluginInputs& in, const RunContext* ctx) {
  const ModelConfig& cfg = in.model->config();
  if (in.rows.size() != 1) throw InputError(fmt::format("retrieval: --token-ids holds {} rows; single-test mode takes one", in.rows.size()));
  if (o.needleSpan.empty()) throw InputError("retrieval: single-test mode (--token-ids) needs --needle-span START:END");
  RetrievalTest t;
  t.needleIndex = -1;
  t.ids = in.rows[0];
  t.length = static_cast<int64_t>(t.ids.size());
  std::tie(t.needleStart, t.needleEnd) = parseRangeText(o.needleSpan, "retrieval --needle-span");
  if (!o.answer.empty()) t.answer = o.answer;
  o.decode.stopTokens = o.stopTokens;  // single-test: no stop unless given
  const TokenDecoder decodeText = textDecoder(in.tokenizer);
  if (ctx) ctx->step(0, 1, "prefill + decoding");
  const auto r = runRetrievalTest(*in.model, t, o.decode, decodeText, o.successThreshold / 100.0, ctx);
  if (ctx) ctx->step(1, 1, "prefill + decoding");
  AnalysisResult out = retrievalToResult({r}, cfg.nLayers, cfg.nHeads, o.successFilter);
  out.json["masked_heads"] = headsJson(o.decode.maskedHeads);
  if (decodeText) out.json["generated_text"] = decodeText(r.generated);
  out.summaryLine = retrievalSummary(o, out.json, 1, false);
  return out;
}

/// Masking experiment (--mask-top K): adds the top K heads of --scores to the masked heads and returns the
/// random-heads control, the --mask-heads plus K random non-retrieval heads (empty without --mask-top, with
/// --no-control and in single-test mode).
std::vector<HeadRef> addMaskTopHeads(RetrievalOptions& o, const ModelConfig& cfg, bool single) {
  std::vector<HeadRef> controlHeads;
  if (o.maskTop <= 0) return controlHeads;
  const at::Tensor priorScores = readRetrievalScores(o.scores, cfg);  // [layer, head]
  const auto top = rankHeads(priorScores, o.maskTop);
  const auto explicitHeads = o.decode.maskedHeads;
  o.decode.maskedHeads.insert(o.decode.maskedHeads.end(), top.begin(), top.end());
  if (o.control && !single) {
    auto exclude = o.decode.maskedHeads;  // masked heads, and the official code's top-N rule when asked
    const auto topN = rankHeads(priorScores, std::max(0, o.controlExcludeTop));
    if (o.controlExcludeTop > 0) exclude.insert(exclude.end(), topN.begin(), topN.end());
    controlHeads = randomControlHeads(priorScores, exclude, o.maskTop, o.retrievalThreshold, static_cast<uint64_t>(o.seed));
    controlHeads.insert(controlHeads.begin(), explicitHeads.begin(), explicitHeads.end());
  }
  return controlHeads;
}

/// The grid's context lengths (--lengths, --n-lengths), depths (--depths) and prompt layout.
void setGridAxes(NiahGrid& grid, const RetrievalOptions& o) {
  const auto [s, e] = o.lengths;
  if (s < 0 || e < s || o.nLengths < 1 || o.nDepths < 1) throw InputError("retrieval: --lengths a:b needs 0 ≤ a ≤ b, --n-lengths/--depths ≥ 1");
  grid.lengths = roundedLinspace(static_cast<double>(s), static_cast<double>(e), o.nLengths);
  grid.depths = roundedLinspace(0, 100, o.nDepths);
  grid.layout = o.layout;
  grid.layout.spanThreshold = o.spanThreshold / 100.0;
}

/// A warning (also told to the user) when the haystack is shorter than the longest context, so that long
/// contexts repeat it.
nlohmann::json haystackWarnings(const PluginInputs& in, const Haystack& haystack, int64_t longest) {
  nlohmann::json warnings = nlohmann::json::array();
  if (longest > static_cast<int64_t>(haystack.ids.size())) {
    warnings.push_back(fmt::format("the haystack has {} tokens, fewer than the longest context ({}); it is repeated, so long contexts hold "
                                   "the same text more than once",
                                   haystack.ids.size(), longest));
    say(in, "warning: " + warnings.back().get<std::string>());
  }
  return warnings;
}

/// Every setting that changes a test's result: the resume sidecar's header and the output's resume key.
RetrievalSettings retrievalSettings(const RetrievalOptions& o, const PluginInputs& in, const NiahGrid& grid, const std::string& hayText,
                                    const std::vector<HeadRef>& controlHeads) {
  RetrievalSettings settings;
  settings.weightsHash = in.model->weightsHash();
  settings.tokenizerHash = tokenizerFilesHash(in.modelFolder);
  settings.dtype = in.dtype;
  settings.device = in.device;
  settings.haystackHash = fnv1a64Hex(hayText);
  settings.needles = grid.needles;
  settings.layout = grid.layout;
  settings.maxNewTokens = o.decode.maxNewTokens;
  settings.stopOnNewline = o.decode.stopOnNewline;
  settings.stopTokens = o.decode.stopTokens;
  settings.maskedHeads = o.decode.maskedHeads;
  settings.controlHeads = controlHeads;
  settings.successThreshold = o.successThreshold / 100.0;
  settings.materialize = o.decode.materialize;
  return settings;
}

/// One line per test run (not per test read back from the resume file), prefixed by `condition`.
NiahReport testProgress(const PluginInputs& in, const char* condition) {
  return [&in, condition](size_t index, size_t total, const RetrievalTestResult& r, bool resumed) {
    if (resumed) return;
    say(in, fmt::format("{}test {}/{} needle {} length {} depth {}%: {} tokens, span {}, rouge1 {:.1f}, {}", condition, index, total, r.needleIndex,
                        r.length, r.depth, r.nTokens, r.spanFound ? "found" : "NOT found", r.rouge1.value_or(0) * 100,
                        r.success ? "success" : "failed"));
  };
}

/// The masking experiment's block: K, where the ranking came from, and each condition's summary (with the
/// control's test records).
nlohmann::json maskExperimentJson(const RetrievalOptions& o, const std::vector<RetrievalTestResult>& results,
                                  const std::vector<HeadRef>& controlHeads, const std::vector<RetrievalTestResult>& control) {
  nlohmann::json mx = {{"k", o.maskTop}, {"scores", o.scores}, {"retrieval_threshold", o.retrievalThreshold}, {"seed", o.seed},
                       {"control_exclude_top", o.controlExcludeTop},
                       {"top_k", conditionSummary(o.decode.maskedHeads, results)}};
  if (!controlHeads.empty()) {
    mx["random_k"] = conditionSummary(controlHeads, control);
    nlohmann::json list = nlohmann::json::array();
    for (const auto& t : control) list.push_back(retrievalTestToJson(t, false));
    mx["random_k"]["test_records"] = list;
  }
  return mx;
}

/// Grid mode: every needle × length × depth test under the mask and, when there are control heads, under
/// the control; resumable from the sidecar (--resume, or <output>.tests.jsonl).
AnalysisResult runGrid(RetrievalOptions& o, const PluginInputs& in, const std::vector<HeadRef>& controlHeads, const RunContext* ctx) {
  const ModelConfig& cfg = in.model->config();
  if (!in.tokenizer) throw InputError(fmt::format("retrieval: the protocol needs tokenizer.json in {}", in.modelFolder));
  const Tokenizer& tok = *in.tokenizer;
  requireDecoder(tok, fmt::format("retrieval: {}", in.modelFolder));
  const std::filesystem::path hayPath = o.haystack.empty() ? retrievalResource("haystack/devils_dictionary.txt") : std::filesystem::path(o.haystack);
  NiahGrid grid;
  grid.needles = readNeedles(o.needles.empty() ? retrievalResource("haystack/needles.jsonl") : std::filesystem::path(o.needles));
  const std::string hayText = readRetrievalText(hayPath, "haystack");
  const Haystack haystack = tokenizeHaystack(tok, hayText);
  setGridAxes(grid, o);
  // Grid mode stops on a decoded newline and after a --stop-token id; --no-stop never stops early.
  o.decode.stopTokens = o.stop ? o.stopTokens : std::vector<int64_t>{};
  o.decode.stopOnNewline = o.stop;
  checkNiahGrid(tok, haystack, grid, o.decode.maxNewTokens, cfg.nCtx);
  const int64_t longest = *std::max_element(grid.lengths.begin(), grid.lengths.end()) - grid.layout.buffer;  // haystack tokens
  const nlohmann::json warnings = haystackWarnings(in, haystack, longest);

  const RetrievalSettings settings = retrievalSettings(o, in, grid, hayText, controlHeads);
  if (o.resume.empty() && in.outputPath.empty())
    throw InputError("retrieval: the grid keeps its finished tests next to its output: give --json, --out or --resume");
  const std::string sidecar = !o.resume.empty() ? o.resume : in.outputPath + ".tests.jsonl";
  RetrievalResumeLog log(sidecar, retrievalSettingsJson(settings), o.resumeGrid, cfg.nLayers, cfg.nHeads);
  if (log.resumed() > 0) say(in, fmt::format("resuming, {} tests already in {}", log.resumed(), sidecar));

  const double threshold = o.successThreshold / 100.0;
  const auto results = runNiahGrid(*in.model, tok, haystack, grid, o.decode, threshold, log, "main", testProgress(in, ""), ctx);
  std::vector<RetrievalTestResult> control;
  if (!controlHeads.empty()) {
    RetrievalDecode d = o.decode;
    d.maskedHeads = controlHeads;
    control = runNiahGrid(*in.model, tok, haystack, grid, d, threshold, log, "control", testProgress(in, "control "), ctx);
  }

  AnalysisResult out = retrievalToResult(results, cfg.nLayers, cfg.nHeads, o.successFilter);
  nlohmann::json& j = out.json;
  j["masked_heads"] = headsJson(o.decode.maskedHeads);
  j["haystack"] = {{"file", o.haystack.empty() ? std::string("resources/haystack/devils_dictionary.txt") : o.haystack},
                   {"tokens", haystack.ids.size()},
                   {"hash", settings.haystackHash},
                   {"repeated", longest > static_cast<int64_t>(haystack.ids.size())}};
  j["stop"] = {{"newline", o.decode.stopOnNewline}, {"tokens", o.decode.stopTokens}};
  j["resume_key"] = retrievalResumeKey(settings);
  j["warnings"] = warnings;
  if (o.maskTop > 0) j["mask_experiment"] = maskExperimentJson(o, results, controlHeads, control);
  out.summaryLine = retrievalSummary(o, j, results.size(), !controlHeads.empty());
  return out;
}

AnalysisResult runRetrieval(const PluginInputs& in, const ParamValues& params, const RunContext* ctx) {
  RetrievalOptions o = retrievalOptions(params, in.model->config());
  const bool single = !in.rows.empty();
  if (o.maskTop > 0 && o.scores.empty()) throw InputError("retrieval: --mask-top K needs --scores FILE.json (an earlier retrieval --json)");
  const std::vector<HeadRef> controlHeads = addMaskTopHeads(o, in.model->config(), single);
  return single ? runSingleTest(o, in, ctx) : runGrid(o, in, controlHeads, ctx);
}

}  // namespace

AnalysisPlugin retrievalPlugin() {
  AnalysisPlugin p = makePlugin("retrieval", "Retrieval", "retrieval-head detection by needle-in-a-haystack decoding", PluginInput::NiahGrid,
                                runRetrieval);
  auto& d = p.descriptor;
  using T = ParamType;
  ParamInfo stopToken = makeParam("stop_token", T::IntList, "--stop-token",
                                  "also stop after emitting this id (repeatable; grid mode stops on a decoded newline anyway)");
  stopToken.repeat = true;
  ParamInfo successFilter = makeParam("success_filter", T::Bool, "--no-success-filter",
                                      "average only over successful tests (ROUGE-1 recall > --success-threshold); --no-success-filter: over every test", "true");
  successFilter.invert = true;
  ParamInfo control = makeParam("control", T::Bool, "--no-control", "with --mask-top, run the random-heads control too; --no-control skips it", "true");
  control.invert = true;
  // The grid's options, then the former table entry's keys in its order (batch command lines keep it).
  d.params = {
      makeParam("needles", T::File, "--needles", "grid: needles.jsonl (default: resources/haystack/needles.jsonl)"),
      makeParam("haystack", T::File, "--haystack", "grid: haystack text file (default: resources/haystack/devils_dictionary.txt, ~118K GPT-2 tokens)"),
      makeParam("lengths", T::Range, "--lengths", "grid: context lengths a:b for round(linspace(a, b, --n-lengths))", "1000:50000"),
      bounded(makeParam("n_lengths", T::Int, "--n-lengths", "grid: number of context lengths", "20"), 1),
      bounded(makeParam("depths", T::Int, "--depths", "grid: number of depths round(linspace(0, 100, N))", "10"), 1),
      bounded(makeParam("buffer", T::Int, "--buffer", "grid: tokens kept for the question (context = length - buffer)", "200"), 0),
      makeParam("question_template", T::String, "--question-template",
                "grid: text after the context; {question} is replaced (default: \"Based on the content of the book, Question: {question}\\nAnswer:\")"),
      makeParam("needle_span", T::Range, "--needle-span", "single test (--token-ids, the GUI's prompt): the answer span START:END in the prompt"),
      makeParam("answer", T::String, "--answer", "single test: answer text for ROUGE-1"),
      bounded(makeParam("max_new_tokens", T::Int, "--max-new-tokens", "greedy decoding steps", "50"), 1),
      stopToken,
      makeParam("no_stop", T::Bool, "--no-stop", "never stop early (no newline stop, no --stop-token)"),
      successFilter,
      bounded(makeParam("success_threshold", T::Float, "--success-threshold", "ROUGE-1 recall × 100 a test must exceed", "50"), 0, 100),
      makeParam("mask_heads", T::HeadList, "--mask-heads", "uniform attention on LAYER.HEAD[,LAYER.HEAD...]"),
      bounded(makeParam("mask_top", T::Int, "--mask-top", "uniform attention on the top K heads of --scores, next to a control of K random non-retrieval heads",
                        "0"),
              0),
      makeParam("scores", T::File, "--scores", "an earlier retrieval --json to rank heads for --mask-top"),
      makeParam("retrieval_threshold", T::Float, "--retrieval-threshold", "heads scoring above this in --scores are retrieval heads, never in the control",
                "0.1"),
      bounded(makeParam("control_exclude_top", T::Int, "--control-exclude-top",
                        "the control also avoids the top N heads of --scores (the official code: 100; 0 = only the threshold rule)", "0"),
              0),
      makeParam("seed", T::Int, "--seed", "seed of the random-heads control", "0"),
      control,
      bounded(makeParam("span_threshold", T::Float, "--span-threshold", "answer-span search: token-set overlap × 100 a window must exceed", "90"), 0,
              100),
      makeParam("resume", T::String, "--resume", "grid: resume file of finished tests (default: <json or out>.tests.jsonl)"),
      makeParam("no_resume", T::Bool, "--no-resume", "grid: start over (the resume file is rewritten from the first finished test)"),
      makeParam("materialize", T::Bool, "--materialize", "prefill through full attention patterns (hook_pattern) instead of the streaming probe"),
  };
  d.figureKeys = {"retrieval_score"};
  d.headlineKeys = {"tests_used", "tests_without_span", "mean_rouge1_recall"};
  return p;
}

}  // namespace mechscope::analysis
