// `mechscope-cli retrieval`: retrieval-head detection by needle-in-a-haystack decoding (METRICS.md
// §1.2), head masking for the causal check, progress per test, resumable (docs/cli.md).
#include <ATen/ATen.h>

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
#include "analysis/retrieval/retrieval.hpp"
#include "app/cli/analysis_common_options.hpp"
#include "app/cli/command.hpp"
#include "core/common/errors.hpp"

namespace mechscope::cli {
namespace {

struct RetrievalCliOptions {
  AnalysisCommonOptions common;
  std::string needles, haystack, lengths = "1000:50000", needleSpan, maskHeads, scores, resume, answer;
  int nLengths = 20, nDepths = 10, maskTop = 0;
  int64_t buffer = 200;
  analysis::RetrievalDecode decode;
  bool noSuccessFilter = false, noResume = false;
  double successThreshold = 50.0;
  std::vector<int64_t> stopTokens;
  bool noStop = false;
};

std::filesystem::path resourcePath(const std::string& rel) {
  if (const char* env = std::getenv("MECHSCOPE_RESOURCES")) return std::filesystem::path(env) / rel;
  return std::filesystem::path(MECHSCOPE_SOURCE_DIR) / "resources" / rel;
}

std::string readText(const std::filesystem::path& p, const std::string& what) {
  std::ifstream in(p);
  if (!in) throw InputError(fmt::format("{}: cannot open the {} file", p.string(), what));
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::vector<std::pair<int, int>> parseHeads(const std::string& text) {
  std::vector<std::pair<int, int>> out;
  std::stringstream ss(text);
  std::string item;
  while (std::getline(ss, item, ',')) {
    const auto dot = item.find('.');
    try {
      if (dot == std::string::npos) throw std::invalid_argument("dot");
      out.emplace_back(std::stoi(item.substr(0, dot)), std::stoi(item.substr(dot + 1)));
    } catch (const std::exception&) {
      throw InputError(fmt::format("retrieval: --mask-heads expects LAYER.HEAD[,LAYER.HEAD...], found '{}'", item));
    }
  }
  return out;
}

using TestKey = std::tuple<int, int64_t, int64_t>;

void runRetrievalCommand(RetrievalCliOptions& o) {
  const bool single = !o.common.tokenIds.empty();
  if (single) o.common.validate("retrieval");
  else if (o.common.json.empty() && o.common.out.empty()) throw InputError("retrieval: give --json FILE.json and/or --out FILE.h5");
  if (!single && (!o.common.prompts.empty() || !o.common.promptFile.empty()))
    throw InputError("retrieval: the protocol builds its own prompts (--haystack, --needles); use --token-ids for a prepared input");
  if (!o.common.out.empty() && !analysis::resultH5Available())
    throw UnsupportedError(fmt::format("retrieval: --out {} needs the HDF5 store, which this build does not have; use --json", o.common.out));
  const LoadedModel m = loadAnalysisModel(o.common);
  const ModelConfig& cfg = m.model->config();
  o.decode.materialize = o.common.materialize;
  if (!o.maskHeads.empty()) o.decode.maskedHeads = parseHeads(o.maskHeads);
  if (o.maskTop > 0) {
    if (o.scores.empty()) throw InputError("retrieval: --mask-top K needs --scores FILE.json (an earlier retrieval --json)");
    std::ifstream in(o.scores);
    if (!in) throw InputError(fmt::format("{}: cannot open --scores", o.scores));
    std::vector<std::vector<double>> s;
    try {
      s = nlohmann::json::parse(in).at("retrieval_score").get<std::vector<std::vector<double>>>();
    } catch (const nlohmann::json::exception& e) {
      throw InputError(fmt::format("{}: expected a retrieval JSON with \"retrieval_score\" ({})", o.scores, e.what()));
    }
    if (static_cast<int>(s.size()) != cfg.nLayers || s.empty() || static_cast<int>(s[0].size()) != cfg.nHeads)
      throw InputError(fmt::format("{}: retrieval_score is not [{}][{}] for this model", o.scores, cfg.nLayers, cfg.nHeads));
    std::vector<double> flat;
    for (const auto& r : s) flat.insert(flat.end(), r.begin(), r.end());
    const auto top = analysis::rankHeads(at::tensor(at::ArrayRef<double>(flat), at::kDouble).view({cfg.nLayers, cfg.nHeads}), o.maskTop);
    o.decode.maskedHeads.insert(o.decode.maskedHeads.end(), top.begin(), top.end());
  }
  std::function<std::string(const std::vector<int64_t>&)> decodeText;
  if (m.tokenizer) decodeText = [&](const std::vector<int64_t>& ids) { return m.tokenizer->decode(ids, true); };
  const double threshold = o.successThreshold / 100.0;
  std::vector<analysis::RetrievalTestResult> results;

  if (single) {
    const auto rows = readInputRows(o.common, m, "retrieval");
    if (rows.size() != 1) throw InputError(fmt::format("retrieval: {} holds {} rows; single-test mode takes one", o.common.tokenIds, rows.size()));
    if (o.needleSpan.empty()) throw InputError("retrieval: single-test mode (--token-ids) needs --needle-span START:END");
    analysis::RetrievalTest t;
    t.needleIndex = -1;
    t.ids = rows[0];
    t.length = static_cast<int64_t>(t.ids.size());
    std::tie(t.needleStart, t.needleEnd) = parseRange(o.needleSpan, "retrieval --needle-span");
    if (!o.answer.empty()) t.answer = o.answer;
    o.decode.stopTokens = o.stopTokens;  // single-test: no stop token unless given
    results.push_back(analysis::runRetrievalTest(*m.model, t, o.decode, decodeText, threshold, &processContext()));
  } else {
    if (!m.tokenizer) throw InputError(fmt::format("retrieval: the protocol needs tokenizer.json in {}", o.common.model));
    const Tokenizer& tok = *m.tokenizer;
    const auto needles = analysis::readNeedles(o.needles.empty() ? resourcePath("haystack/needles.jsonl") : std::filesystem::path(o.needles));
    const std::string hay = readText(o.haystack.empty() ? resourcePath("haystack/haystack.txt") : std::filesystem::path(o.haystack), "haystack");
    const auto haystackIds = tok.encode(hay, false).ids;
    const auto [s, e] = parseRange(o.lengths, "retrieval --lengths");
    if (s < 0 || e < s || o.nLengths < 1 || o.nDepths < 1) throw InputError("retrieval: --lengths a:b needs 0 ≤ a ≤ b, --n-lengths/--depths ≥ 1");
    const auto lengths = analysis::roundedLinspace(static_cast<double>(s), static_cast<double>(e), o.nLengths);
    const auto depths = analysis::roundedLinspace(0, 100, o.nDepths);
    analysis::NeedleLayout layout;
    layout.buffer = o.buffer;
    layout.periodIds = analysis::periodTokenIds(tok);
    layout.prefixIds = tok.encode("", true).ids;
    if (!o.noStop) {
      o.decode.stopTokens = o.stopTokens;
      if (o.stopTokens.empty()) {
        const auto nl = tok.encode("\n", false).ids;
        if (nl.size() == 1) o.decode.stopTokens.push_back(nl[0]);
      }
    }
    // Resume: finished tests live in a JSONL sidecar next to the output.
    const std::string sidecar = !o.resume.empty() ? o.resume : (o.common.json.empty() ? o.common.out : o.common.json) + ".tests.jsonl";
    std::map<TestKey, analysis::RetrievalTestResult> done;
    if (!o.noResume && std::filesystem::exists(sidecar)) {
      std::ifstream in(sidecar);
      std::string line;
      while (std::getline(in, line)) {
        if (line.empty()) continue;
        nlohmann::json j;
        try {
          j = nlohmann::json::parse(line);
        } catch (const nlohmann::json::exception&) {
          continue;  // a line cut by a crash: redo that test
        }
        auto r = analysis::retrievalTestFromJson(j);
        if (r.score.size(0) != cfg.nLayers || r.score.size(1) != cfg.nHeads)
          throw InputError(fmt::format("{}: resume file is for a model with another head grid; delete it or pass --no-resume", sidecar));
        done[{r.needleIndex, r.length, r.depth}] = std::move(r);
      }
      std::cerr << fmt::format("retrieval: resuming, {} tests already in {}\n", done.size(), sidecar);
    }
    std::ofstream log(sidecar, o.noResume ? std::ios::trunc : std::ios::app);
    if (!log) throw InputError(fmt::format("{}: cannot write the resume file", sidecar));
    const size_t total = needles.size() * lengths.size() * depths.size();
    size_t index = 0;
    for (size_t ni = 0; ni < needles.size(); ++ni)
      for (int64_t len : lengths)
        for (int64_t depth : depths) {
          ++index;
          const TestKey key{static_cast<int>(ni), len, depth};
          if (auto it = done.find(key); it != done.end()) {
            results.push_back(it->second);
            continue;
          }
          processContext().check();
          const auto input = analysis::buildNeedleInput(tok, haystackIds, needles[ni], len, static_cast<double>(depth), layout);
          analysis::RetrievalTest t;
          t.needleIndex = static_cast<int>(ni);
          t.length = len;
          t.depth = depth;
          t.ids = input.ids;
          t.needleStart = input.needleStart;
          t.needleEnd = input.needleEnd;
          t.answer = needles[ni].realNeedle;
          auto r = analysis::runRetrievalTest(*m.model, t, o.decode, decodeText, threshold, &processContext());
          log << analysis::retrievalTestToJson(r, true).dump() << "\n" << std::flush;
          std::cerr << fmt::format("retrieval: test {}/{} needle {} length {} depth {}%: {} tokens, rouge1 {:.1f}, {}\n", index, total, ni,
                                   len, depth, r.nTokens, r.rouge1.value_or(0) * 100, r.success ? "success" : "failed");
          results.push_back(std::move(r));
        }
  }
  auto out = analysis::retrievalToResult(results, cfg.nLayers, cfg.nHeads, !o.noSuccessFilter);
  nlohmann::json masked = nlohmann::json::array();
  for (const auto& [l, h] : o.decode.maskedHeads) masked.push_back({l, h});
  out.json["masked_heads"] = masked;
  std::cout << fmt::format("retrieval: {} tests, {} used, {} heads with score > 0.1\n", results.size(), out.json["tests_used"].get<int64_t>(),
                           [&] {
                             int c = 0;
                             for (const auto& h : out.json["ranked_heads"]) c += h["score"].get<double>() > 0.1;
                             return c;
                           }());
  writeAnalysisOutputs(o.common, out, m, o.common.materialize ? "materialized" : "probe");
}

const RegisterCommand reg{"retrieval", 43, [](CLI::App& root) {
  auto o = std::make_shared<RetrievalCliOptions>();
  auto* sub = root.add_subcommand("retrieval", "Retrieval-head detection by needle-in-a-haystack decoding; head masking");
  o->common.add(sub);
  sub->add_option("--needles", o->needles, "needles.jsonl (default: resources/haystack/needles.jsonl)");
  sub->add_option("--haystack", o->haystack, "Haystack text file (default: resources/haystack/haystack.txt)");
  sub->add_option("--lengths", o->lengths, "Context lengths a:b for round(linspace(a, b, --n-lengths)) (default 1000:50000)");
  sub->add_option("--n-lengths", o->nLengths, "Number of context lengths (default 20)");
  sub->add_option("--depths", o->nDepths, "Number of depths round(linspace(0, 100, N)) (default 10)");
  sub->add_option("--buffer", o->buffer, "Tokens kept for the question (context = length - buffer; default 200)");
  sub->add_option("--max-new-tokens", o->decode.maxNewTokens, "Greedy decoding steps (default 50)");
  sub->add_option("--stop-token", o->stopTokens, "Stop after emitting this id (repeatable; default: the newline token)");
  sub->add_flag("--no-stop", o->noStop, "Never stop early");
  sub->add_flag("--no-success-filter", o->noSuccessFilter, "Average over every test, not only ROUGE-1 recall > threshold");
  sub->add_option("--success-threshold", o->successThreshold, "ROUGE-1 recall × 100 a test must exceed (default 50)");
  sub->add_option("--needle-span", o->needleSpan, "Single-test mode: the answer span START:END in --token-ids");
  sub->add_option("--answer", o->answer, "Single-test mode: answer text for ROUGE-1");
  sub->add_option("--mask-heads", o->maskHeads, "Uniform attention on LAYER.HEAD[,LAYER.HEAD...]");
  sub->add_option("--mask-top", o->maskTop, "Uniform attention on the top K heads of --scores");
  sub->add_option("--scores", o->scores, "An earlier retrieval --json to rank heads for --mask-top");
  sub->add_option("--resume", o->resume, "Resume file of finished tests (default: <json or out>.tests.jsonl)");
  sub->add_flag("--no-resume", o->noResume, "Start over (truncates the resume file)");
  sub->callback([o, sub] {
    o->common.finishCommandLine(sub);
    attachStderrProgress("retrieval");
    runRetrievalCommand(*o);
  });
}};

}  // namespace
}  // namespace mechscope::cli
