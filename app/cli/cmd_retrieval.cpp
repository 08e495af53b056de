// `mechscope-cli retrieval`: retrieval-head detection by needle-in-a-haystack decoding (docs/metrics.md
// §1.2), head masking for the causal check, progress per test, resumable (docs/cli.md).
#include <ATen/ATen.h>

#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <sstream>
#include <tuple>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "analysis/common/needle.hpp"
#include "analysis/retrieval/head_control.hpp"
#include "analysis/retrieval/niah_grid.hpp"
#include "analysis/retrieval/resume.hpp"
#include "analysis/retrieval/retrieval.hpp"
#include "analysis/common/param_values.hpp"
#include "app/cli/analysis_common_options.hpp"
#include "app/cli/command.hpp"
#include "core/common/errors.hpp"

namespace mechscope::cli {
namespace {

struct RetrievalCliOptions {
  AnalysisCommonOptions common;
  std::string needles, haystack, lengths = "1000:50000", needleSpan, maskHeads, scores, resume, answer;
  int nLengths = 20, nDepths = 10, maskTop = 0, controlExcludeTop = 0;
  analysis::NeedleLayout layout;
  analysis::RetrievalDecode decode;
  bool noSuccessFilter = false, noResume = false, noControl = false, noStop = false;
  double successThreshold = 50.0, spanThreshold = 90.0, retrievalThreshold = 0.1;
  int64_t seed = 0;
  std::vector<int64_t> stopTokens;
};

std::filesystem::path resourcePath(const std::string& rel) {
  if (const char* env = std::getenv("MECHSCOPE_RESOURCES")) return std::filesystem::path(env) / rel;
  return std::filesystem::path(MECHSCOPE_SOURCE_DIR) / "resources" / rel;
}

std::string readText(const std::filesystem::path& p, const std::string& what) {
  std::ifstream in(p, std::ios::binary);
  if (!in) throw InputError(fmt::format("{}: cannot open the {} file", p.string(), what));
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

/// Token ids → text (empty: the tokenizer cannot decode text).
using TokenDecoder = std::function<std::string(const std::vector<int64_t>&)>;

/// One condition's outcome for the side-by-side masking report.
nlohmann::json conditionSummary(const std::vector<HeadRef>& heads, const std::vector<analysis::RetrievalTestResult>& tests) {
  double rouge = 0;
  int64_t withRouge = 0, succeeded = 0;
  for (const auto& t : tests) {
    if (t.rouge1) {
      rouge += *t.rouge1;
      ++withRouge;
    }
    succeeded += t.success;
  }
  return {{"heads", analysis::headsJson(heads)},
          {"tests", tests.size()},
          {"success_rate", tests.empty() ? 0.0 : static_cast<double>(succeeded) / static_cast<double>(tests.size())},
          {"mean_rouge1_recall", withRouge > 0 ? nlohmann::json(rouge / static_cast<double>(withRouge) * 100.0) : nlohmann::json(nullptr)}};
}

std::string fileHash(const std::filesystem::path& p) {
  std::string bytes;
  for (const char* f : {"tokenizer.json", "tokenizer_config.json"})
    if (std::filesystem::exists(p / f)) bytes += readText(p / f, f);
  return analysis::fnv1a64Hex(bytes);
}

/// Single-test mode: one prepared input (--token-ids) with its answer span (--needle-span), decoded and scored.
void runSingleTest(RetrievalCliOptions& o, const LoadedModel& m, const TokenDecoder& decodeText) {
  const auto rows = readInputRows(o.common, m, "retrieval");
  if (rows.size() != 1) throw InputError(fmt::format("retrieval: {} holds {} rows; single-test mode takes one", o.common.tokenIds, rows.size()));
  if (o.needleSpan.empty()) throw InputError("retrieval: single-test mode (--token-ids) needs --needle-span START:END");
  analysis::RetrievalTest t;
  t.needleIndex = -1;
  t.ids = rows[0];
  t.length = static_cast<int64_t>(t.ids.size());
  std::tie(t.needleStart, t.needleEnd) = analysis::parseRangeText(o.needleSpan, "retrieval --needle-span");
  if (!o.answer.empty()) t.answer = o.answer;
  o.decode.stopTokens = o.stopTokens;  // single-test: no stop unless given
  const auto r = analysis::runRetrievalTest(*m.model, t, o.decode, decodeText, o.successThreshold / 100.0, &processContext());
  auto out = analysis::retrievalToResult({r}, m.model->config().nLayers, m.model->config().nHeads, !o.noSuccessFilter);
  out.json["masked_heads"] = analysis::headsJson(o.decode.maskedHeads);
  writeAnalysisOutputs(o.common, out, m, o.common.materialize ? "materialized" : "probe");
}

/// Refuses what `retrieval` cannot run, before the model is loaded and hours of decoding: outputs
/// missing or unwritable, prompts in grid mode, --out without HDF5, --mask-top without --scores,
/// thresholds outside [0, 100].
void validateRetrievalOptions(const RetrievalCliOptions& o, bool single) {
  if (single) o.common.validate("retrieval");
  else o.common.validateOutputs("retrieval");  // --json/--out given and writable, before hours of decoding
  if (!single && (!o.common.prompts.empty() || !o.common.promptFile.empty()))
    throw InputError("retrieval: the protocol builds its own prompts (--haystack, --needles); use --token-ids for a prepared input");
  if (!o.common.out.empty() && !analysis::resultH5Available())
    throw UnsupportedError(fmt::format("retrieval: --out {} needs the HDF5 store, which this build does not have; use --json", o.common.out));
  if (o.maskTop > 0 && o.scores.empty()) throw InputError("retrieval: --mask-top K needs --scores FILE.json (an earlier retrieval --json)");
  if (o.successThreshold < 0 || o.successThreshold > 100 || o.spanThreshold < 0 || o.spanThreshold > 100)
    throw InputError("retrieval: --success-threshold and --span-threshold are percentages in [0, 100]");
}

/// Token ids → text with the model's tokenizer; empty when it has none that decodes text.
TokenDecoder textDecoder(const LoadedModel& m) {
  TokenDecoder decodeText;
  if (m.tokenizer && m.tokenizer->decodesText()) decodeText = [&m](const std::vector<int64_t>& ids) { return m.tokenizer->decode(ids, true); };
  return decodeText;
}

/// Masking experiment (--mask-top K): adds the top K heads of --scores to the masked heads and returns
/// the random-heads control, the --mask-heads plus K random non-retrieval heads (empty without
/// --mask-top, with --no-control and in single-test mode).
std::vector<HeadRef> addMaskTopHeads(RetrievalCliOptions& o, const ModelConfig& cfg, bool single) {
  std::vector<HeadRef> controlHeads;
  if (o.maskTop <= 0) return controlHeads;
  const at::Tensor priorScores = analysis::readRetrievalScores(o.scores, cfg);  // [layer, head]
  const auto top = analysis::rankHeads(priorScores, o.maskTop);
  const auto explicitHeads = o.decode.maskedHeads;
  o.decode.maskedHeads.insert(o.decode.maskedHeads.end(), top.begin(), top.end());
  if (!o.noControl && !single) {
    auto exclude = o.decode.maskedHeads;  // masked heads, and the official code's top-N rule when asked
    const auto topN = analysis::rankHeads(priorScores, std::max(0, o.controlExcludeTop));
    if (o.controlExcludeTop > 0) exclude.insert(exclude.end(), topN.begin(), topN.end());
    controlHeads = analysis::randomControlHeads(priorScores, exclude, o.maskTop, o.retrievalThreshold, static_cast<uint64_t>(o.seed));
    controlHeads.insert(controlHeads.begin(), explicitHeads.begin(), explicitHeads.end());
  }
  return controlHeads;
}

/// --needles, or the bundled needles.
std::filesystem::path needlesPath(const RetrievalCliOptions& o) {
  return o.needles.empty() ? resourcePath("haystack/needles.jsonl") : std::filesystem::path(o.needles);
}

/// --haystack, or the bundled Devil's Dictionary.
std::filesystem::path haystackPath(const RetrievalCliOptions& o) {
  return o.haystack.empty() ? resourcePath("haystack/devils_dictionary.txt") : std::filesystem::path(o.haystack);
}

/// The grid's context lengths (--lengths, --n-lengths), depths (--depths) and prompt layout.
void setGridAxes(analysis::NiahGrid& grid, const RetrievalCliOptions& o) {
  const auto [s, e] = analysis::parseRangeText(o.lengths, "retrieval --lengths");
  if (s < 0 || e < s || o.nLengths < 1 || o.nDepths < 1) throw InputError("retrieval: --lengths a:b needs 0 ≤ a ≤ b, --n-lengths/--depths ≥ 1");
  grid.lengths = analysis::roundedLinspace(static_cast<double>(s), static_cast<double>(e), o.nLengths);
  grid.depths = analysis::roundedLinspace(0, 100, o.nDepths);
  grid.layout = o.layout;
  grid.layout.spanThreshold = o.spanThreshold / 100.0;
}

/// Grid mode stops on a decoded newline and after a --stop-token id; --no-stop never stops early.
void setGridStopRule(RetrievalCliOptions& o) {
  o.decode.stopTokens = o.stopTokens;
  o.decode.stopOnNewline = !o.noStop;
  if (o.noStop) o.decode.stopTokens.clear();
}

/// Tokens of haystack text in the longest context of the grid.
int64_t longestContext(const analysis::NiahGrid& grid) {
  return *std::max_element(grid.lengths.begin(), grid.lengths.end()) - grid.layout.buffer;
}

/// A warning (also printed to stderr) when the haystack is shorter than the longest context, so that
/// long contexts repeat it.
nlohmann::json haystackWarnings(const analysis::Haystack& haystack, int64_t longest) {
  nlohmann::json warnings = nlohmann::json::array();
  if (longest > static_cast<int64_t>(haystack.ids.size())) {
    warnings.push_back(fmt::format("the haystack has {} tokens, fewer than the longest context ({}); it is repeated, so long contexts hold "
                                   "the same text more than once",
                                   haystack.ids.size(), longest));
    std::cerr << "retrieval: warning: " << warnings.back().get<std::string>() << "\n";
  }
  return warnings;
}

/// Every setting that changes a test's result: the resume sidecar's header and the output's resume key.
analysis::RetrievalSettings retrievalSettings(const RetrievalCliOptions& o, const LoadedModel& m, const analysis::NiahGrid& grid,
                                              const std::string& hayText, const std::vector<HeadRef>& controlHeads) {
  analysis::RetrievalSettings settings;
  settings.weightsHash = m.model->weightsHash();
  settings.tokenizerHash = fileHash(o.common.model);
  settings.dtype = o.common.dtype;
  settings.device = o.common.device;
  settings.haystackHash = analysis::fnv1a64Hex(hayText);
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

/// Finished tests live in a JSONL sidecar next to the output (created by the first finished test):
/// --resume, or <json or out>.tests.jsonl.
std::string resumeSidecarPath(const RetrievalCliOptions& o) {
  return !o.resume.empty() ? o.resume : (o.common.json.empty() ? o.common.out : o.common.json) + ".tests.jsonl";
}

/// One stderr line per test run (not per test read back from the resume file), prefixed by `condition`.
analysis::NiahReport stderrProgress(const char* condition) {
  return [condition](size_t index, size_t total, const analysis::RetrievalTestResult& r, bool resumed) {
    if (resumed) return;
    std::cerr << fmt::format("retrieval: {}test {}/{} needle {} length {} depth {}%: {} tokens, span {}, rouge1 {:.1f}, {}\n", condition, index,
                             total, r.needleIndex, r.length, r.depth, r.nTokens, r.spanFound ? "found" : "NOT found",
                             r.rouge1.value_or(0) * 100, r.success ? "success" : "failed");
  };
}

/// The grid's inputs next to its scores: masked heads, haystack, stop rule, resume key and warnings.
void addGridProvenance(nlohmann::json& j, const RetrievalCliOptions& o, const analysis::Haystack& haystack, int64_t longest,
                       const analysis::RetrievalSettings& settings, const nlohmann::json& warnings) {
  j["masked_heads"] = analysis::headsJson(o.decode.maskedHeads);
  j["haystack"] = {{"file", o.haystack.empty() ? std::string("resources/haystack/devils_dictionary.txt") : o.haystack},
                   {"tokens", haystack.ids.size()},
                   {"hash", settings.haystackHash},
                   {"repeated", longest > static_cast<int64_t>(haystack.ids.size())}};
  j["stop"] = {{"newline", o.decode.stopOnNewline}, {"tokens", o.decode.stopTokens}};
  j["resume_key"] = analysis::retrievalResumeKey(settings);
  j["warnings"] = warnings;
}

/// The masking experiment's block: K, where the ranking came from, and each condition's summary (with
/// the control's test records).
nlohmann::json maskExperimentJson(const RetrievalCliOptions& o, const std::vector<analysis::RetrievalTestResult>& results,
                                  const std::vector<HeadRef>& controlHeads, const std::vector<analysis::RetrievalTestResult>& control) {
  nlohmann::json mx = {{"k", o.maskTop}, {"scores", o.scores}, {"retrieval_threshold", o.retrievalThreshold}, {"seed", o.seed},
                       {"control_exclude_top", o.controlExcludeTop},
                       {"top_k", conditionSummary(o.decode.maskedHeads, results)}};
  if (!controlHeads.empty()) {
    mx["random_k"] = conditionSummary(controlHeads, control);
    nlohmann::json list = nlohmann::json::array();
    for (const auto& t : control) list.push_back(analysis::retrievalTestToJson(t, false));
    mx["random_k"]["test_records"] = list;
  }
  return mx;
}

/// The stdout summary: tests run and used, heads scoring above 0.1 and, with --mask-top, the success
/// rate under each mask.
void printRetrievalSummary(const RetrievalCliOptions& o, const nlohmann::json& j, size_t tests, bool hasControl) {
  std::cout << fmt::format("retrieval: {} tests, {} used, {} without an answer span, {} heads with score > 0.1\n", tests,
                           j.at("tests_used").get<int64_t>(), j.at("tests_without_span").get<int64_t>(), [&] {
                             int c = 0;
                             for (const auto& h : j.at("ranked_heads")) c += h.at("score").get<double>() > 0.1;
                             return c;
                           }());
  if (o.maskTop > 0)
    std::cout << fmt::format("retrieval: masking top {}: success {:.2f}; {}\n", o.maskTop,
                             j.at("mask_experiment").at("top_k").at("success_rate").get<double>(),
                             !hasControl ? std::string("no random control")
                                         : fmt::format("random {} (seed {}): success {:.2f}", o.maskTop, o.seed,
                                                       j.at("mask_experiment").at("random_k").at("success_rate").get<double>()));
}

/// Grid mode: every needle × length × depth test under the mask and, when there are control heads,
/// under the control; resumable from the sidecar; one result written to --json/--out.
void runGrid(RetrievalCliOptions& o, const LoadedModel& m, const std::vector<HeadRef>& controlHeads) {
  const ModelConfig& cfg = m.model->config();
  if (!m.tokenizer) throw InputError(fmt::format("retrieval: the protocol needs tokenizer.json in {}", o.common.model));
  const Tokenizer& tok = *m.tokenizer;
  analysis::requireDecoder(tok, fmt::format("retrieval: {}", o.common.model));
  const std::filesystem::path hayPath = haystackPath(o);
  analysis::NiahGrid grid;
  grid.needles = analysis::readNeedles(needlesPath(o));
  const std::string hayText = readText(hayPath, "haystack");
  const auto haystack = analysis::tokenizeHaystack(tok, hayText);
  setGridAxes(grid, o);
  setGridStopRule(o);
  analysis::checkNiahGrid(tok, haystack, grid, o.decode.maxNewTokens, cfg.nCtx);
  const int64_t longest = longestContext(grid);
  const nlohmann::json warnings = haystackWarnings(haystack, longest);

  const analysis::RetrievalSettings settings = retrievalSettings(o, m, grid, hayText, controlHeads);
  const std::string sidecar = resumeSidecarPath(o);
  analysis::RetrievalResumeLog log(sidecar, analysis::retrievalSettingsJson(settings), !o.noResume, cfg.nLayers, cfg.nHeads);
  if (log.resumed() > 0) std::cerr << fmt::format("retrieval: resuming, {} tests already in {}\n", log.resumed(), sidecar);

  const double threshold = o.successThreshold / 100.0;
  const auto results = analysis::runNiahGrid(*m.model, tok, haystack, grid, o.decode, threshold, log, "main", stderrProgress(""), &processContext());
  std::vector<analysis::RetrievalTestResult> control;
  if (!controlHeads.empty()) {
    analysis::RetrievalDecode d = o.decode;
    d.maskedHeads = controlHeads;
    control = analysis::runNiahGrid(*m.model, tok, haystack, grid, d, threshold, log, "control", stderrProgress("control "), &processContext());
  }

  auto out = analysis::retrievalToResult(results, cfg.nLayers, cfg.nHeads, !o.noSuccessFilter);
  addGridProvenance(out.json, o, haystack, longest, settings, warnings);
  if (o.maskTop > 0) out.json["mask_experiment"] = maskExperimentJson(o, results, controlHeads, control);
  printRetrievalSummary(o, out.json, results.size(), !controlHeads.empty());
  writeAnalysisOutputs(o.common, out, m, o.common.materialize ? "materialized" : "probe");
}

/// `retrieval`: checks, model, mask heads, then one prepared test (--token-ids) or the grid.
void runRetrievalCommand(RetrievalCliOptions& o) {
  const bool single = !o.common.tokenIds.empty();
  validateRetrievalOptions(o, single);
  const LoadedModel m = loadAnalysisModel(o.common);
  o.decode.materialize = o.common.materialize;
  if (!o.maskHeads.empty()) o.decode.maskedHeads = parseHeadList(o.maskHeads, "--mask-heads");
  const std::vector<HeadRef> controlHeads = addMaskTopHeads(o, m.model->config(), single);
  if (single) return runSingleTest(o, m, textDecoder(m));
  runGrid(o, m, controlHeads);
}

const RegisterCommand reg_cmd_retrieval{"retrieval", 43, [](CLI::App& root) {
  auto o = std::make_shared<RetrievalCliOptions>();
  auto* sub = root.add_subcommand("retrieval", "Retrieval-head detection by needle-in-a-haystack decoding; head masking");
  o->common.add(sub);
  sub->add_option("--needles", o->needles, "needles.jsonl (default: resources/haystack/needles.jsonl)");
  sub->add_option("--haystack", o->haystack, "Haystack text file (default: resources/haystack/devils_dictionary.txt, ~118K GPT-2 tokens)");
  sub->add_option("--lengths", o->lengths, "Context lengths a:b for round(linspace(a, b, --n-lengths)) (default 1000:50000)");
  sub->add_option("--n-lengths", o->nLengths, "Number of context lengths (default 20)");
  sub->add_option("--depths", o->nDepths, "Number of depths round(linspace(0, 100, N)) (default 10)");
  sub->add_option("--buffer", o->layout.buffer, "Tokens kept for the question (context = length - buffer; default 200)");
  sub->add_option("--question-template", o->layout.questionTemplate,
                  "Text after the context; {question} is replaced (default: \"Based on the content of the book, Question: {question}\\nAnswer:\")");
  sub->add_option("--span-threshold", o->spanThreshold, "Answer-span search: token-set overlap × 100 a window must exceed (default 90)");
  sub->add_option("--max-new-tokens", o->decode.maxNewTokens, "Greedy decoding steps (default 50)");
  sub->add_option("--stop-token", o->stopTokens, "Also stop after emitting this id (repeatable; grid mode stops on a decoded newline anyway)");
  sub->add_flag("--no-stop", o->noStop, "Never stop early (no newline stop, no --stop-token)");
  sub->add_flag("--no-success-filter", o->noSuccessFilter, "Average over every test, not only ROUGE-1 recall > threshold");
  sub->add_option("--success-threshold", o->successThreshold, "ROUGE-1 recall × 100 a test must exceed (default 50)");
  sub->add_option("--needle-span", o->needleSpan, "Single-test mode: the answer span START:END in --token-ids");
  sub->add_option("--answer", o->answer, "Single-test mode: answer text for ROUGE-1");
  sub->add_option("--mask-heads", o->maskHeads, "Uniform attention on LAYER.HEAD[,LAYER.HEAD...]");
  sub->add_option("--mask-top", o->maskTop, "Uniform attention on the top K heads of --scores, next to a control of K random non-retrieval heads");
  sub->add_option("--scores", o->scores, "An earlier retrieval --json to rank heads for --mask-top");
  sub->add_option("--retrieval-threshold", o->retrievalThreshold, "Heads scoring above this in --scores are retrieval heads, never in the control (default 0.1)");
  sub->add_option("--control-exclude-top", o->controlExcludeTop,
                  "The control also avoids the top N heads of --scores (the official code: 100; default 0 = only the threshold rule)");
  sub->add_option("--seed", o->seed, "Seed of the random-heads control (default 0)");
  sub->add_flag("--no-control", o->noControl, "With --mask-top: skip the random-heads control run");
  sub->add_option("--resume", o->resume, "Resume file of finished tests (default: <json or out>.tests.jsonl)");
  sub->add_flag("--no-resume", o->noResume, "Start over (the resume file is rewritten from the first finished test)");
  sub->callback([o, sub] {
    o->common.finishCommandLine(sub);
    attachStderrProgress("retrieval");
    runRetrievalCommand(*o);
  });
}};

}  // namespace
}  // namespace mechscope::cli
