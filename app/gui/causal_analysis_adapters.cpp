#include "app/gui/causal_analysis_adapters.hpp"

#include <ATen/ATen.h>

#include <QFile>
#include <QJsonArray>
#include <QRegularExpression>


#include "analysis/ablation/ablation.hpp"
#include "analysis/ablation/ablation_sweep.hpp"
#include "analysis/circuits/circuit_discovery.hpp"
#include "analysis/common/datasets.hpp"
#include "analysis/circuits/overlap.hpp"
#include "analysis/retrieval/retrieval.hpp"
#include "app/gui/cli_result_view.hpp"
#include "core/common/errors.hpp"

namespace mechscope::gui {

namespace {

void needPrompt(const AnalysisInput& in, const char* name) {
  if (!in.session) throw InputError(std::string(name) + ": no model loaded; open a model first");
  if (in.tokens.ids.empty()) throw InputError(std::string(name) + ": the prompt has no tokens; type a prompt first");
}

const PatchingSession& needPair(const AnalysisInput& in, const char* name) {
  if (!in.patching)
    throw InputError(std::string(name) + ": needs the clean/corrupted pair: open the Patching panel and press Run clean + corrupted");
  return *in.patching;
}

at::Tensor ids1(const std::vector<int64_t>& ids, const HookedTransformer& m) {
  return at::tensor(at::ArrayRef<int64_t>(ids), at::kLong).unsqueeze(0).to(m.device());  // [1, pos]
}

at::Tensor scalarId(int64_t id, const HookedTransformer& m) { return at::tensor(std::vector<int64_t>{id}, at::kLong).to(m.device()); }  // [1]

nlohmann::json readJsonFile(const QString& path, const QString& what) {
  QFile f(path);
  if (!f.open(QIODevice::ReadOnly))
    throw InputError(QString("%1: %2 cannot be opened; give the JSON file written by `mechscope-cli circuit --json`").arg(what, path).toStdString());
  try {
    return nlohmann::json::parse(f.readAll().toStdString());
  } catch (const nlohmann::json::exception& e) {
    throw InputError(QString("%1: %2 is not JSON (%3)").arg(what, path, e.what()).toStdString());
  }
}


}  // namespace

std::pair<int64_t, int64_t> parseTokenRange(const QString& text, int64_t limit, const QString& what) {
  static const QRegularExpression re(R"(^\s*(\d+)\s*:\s*(\d+)\s*$)");
  const auto m = re.match(text);
  if (!m.hasMatch())
    throw InputError(QString("%1: '%2' is not a token range a:b (e.g. 2:5 = tokens 2, 3, 4)").arg(what, text).toStdString());
  const int64_t a = m.captured(1).toLongLong(), b = m.captured(2).toLongLong();
  if (a >= b || b > limit)
    throw InputError(QString("%1: %2:%3 is not inside the %4 tokens (need 0 ≤ a < b ≤ %4)").arg(what).arg(a).arg(b).arg(limit).toStdString());
  return {a, b};
}

std::vector<HeadRef> parseHeadList(const QString& text, int layers, int heads, const QString& what) {
  return mechscope::parseHeadList(text.toStdString(), what.toStdString(), layers, heads);
}

void wireRetrievalAdapter(AnalysisAdapter& a) {
  a.title = "Retrieval";
  a.available = true;
  a.note = "analysis/retrieval, one needle test on the prompt: greedy decoding, per-step copy rule (the CLI's --token-ids mode)";
  a.params = {{"needle_tokens", "Needle span", QString(), 0, 0, {}, "token positions a:b of the answer in the prompt (the token strip shows them)"},
              {"max_new_tokens", "Decoding steps", 8, 1, 4096, {}, "greedy steps (e.g. the answer's length)"},
              {"mask_heads", "Mask heads", QString(), 0, 0, {}, "LAYER.HEAD list given uniform attention (causal check)"},
              {"stop_on_newline", "Stop on newline", true, 0, 0, {}, "stop once the decoded answer holds a newline (the official rule; needs the tokenizer)"}};
  a.run = [](const AnalysisInput& in, const QJsonObject& params, const RunContext& ctx) {
    needPrompt(in, "retrieval");
    const auto& model = *in.session->model;
    analysis::RetrievalTest t;
    t.needleIndex = -1;
    t.ids = in.tokens.ids;
    t.length = static_cast<int64_t>(t.ids.size());
    if (params["needle_tokens"].toString().trimmed().isEmpty())
      throw InputError("retrieval: give the needle span a:b (token positions of the answer in the prompt)");
    std::tie(t.needleStart, t.needleEnd) = parseTokenRange(params["needle_tokens"].toString(), t.length, "retrieval: needle span");
    analysis::RetrievalDecode d;
    d.maxNewTokens = params["max_new_tokens"].toInt(8);
    d.maskedHeads = parseHeadList(params["mask_heads"].toString(), model.config().nLayers, model.config().nHeads, "retrieval: mask heads");
    ctx.step(0, 1, "retrieval: prefill + decoding");
    std::function<std::string(const std::vector<int64_t>&)> decodeText;
    if (in.session->tokenizer) decodeText = [tok = *in.session->tokenizer](const std::vector<int64_t>& ids) { return tok.decode(ids, true); };
    d.stopOnNewline = params["stop_on_newline"].toBool(true) && static_cast<bool>(decodeText);  // as the CLI
    const auto test = analysis::runRetrievalTest(model, t, d, decodeText, 0.5, &ctx);
    ctx.step(1, 1, "retrieval: prefill + decoding");
    auto out = analysis::retrievalToResult({test}, model.config().nLayers, model.config().nHeads, false);
    nlohmann::json masked = nlohmann::json::array();
    for (const auto& [l, h] : d.maskedHeads) masked.push_back({l, h});
    out.json["masked_heads"] = masked;
    AnalysisResult r = resultFromCliJson("retrieval", out.json, in.tokens.display);
    keepFormValues(r, params);
    if (in.session->tokenizer) r.params["generated"] = QString::fromStdString(in.session->tokenizer->decode(test.generated));
    return r;
  };
}

void wireAblationAdapter(AnalysisAdapter& a) {
  a.title = "Ablation";
  a.available = true;
  a.needsPatching = true;
  a.note = "analysis/ablation on the Patching panel's clean prompt: every head alone (grid), plus an optional head set";
  a.params = {{"method", "Method", QString("zero"), 0, 0, {"zero", "mean", "uniform", "resample"},
               "mean/resample take the corrupted prompt as the reference; uniform = uniform attention over visible keys"},
              {"normalise", "Normalise", true, 0, 0, {}, "effect / |logit diff before| (else the raw Δ logit diff)"},
              {"heads", "Head set", QString(), 0, 0, {}, "LAYER.HEAD list ablated together (reported as before/after)"},
              {"knockout", "Knockout", false, 0, 0, {}, "ablate every head NOT in the set (circuit faithfulness)"}};
  a.run = [](const AnalysisInput& in, const QJsonObject& params, const RunContext& ctx) {
    const PatchingSession& pair = needPair(in, "ablate");
    const auto& model = *pair.model()->model;
    const int L = model.config().nLayers, H = model.config().nHeads;
    const at::Tensor tokens = ids1(pair.cleanIds(), model), correct = scalarId(pair.answer(), model),
                     incorrect = scalarId(pair.incorrect(), model);
    analysis::AblationParams base;
    base.method = analysis::parseAblationMethod(params["method"].toString("zero").toStdString());
    if (base.method == analysis::AblationMethod::Mean || base.method == analysis::AblationMethod::Resample)
      base.reference = ids1(pair.corruptIds(), model);
    const bool normalise = params["normalise"].toBool(true);
    // Every head alone: the analysis library's sweep (the CLI's `ablate --sweep`), one metric per head.
    const analysis::AblationSweepResult sweep = analysis::ablationHeadSweep(model, tokens, correct, incorrect, base, &ctx);
    const double before = sweep.metricBefore;
    const at::Tensor after = sweep.metricAfter.to(at::kCPU, at::kDouble);  // [layer, head]
    nlohmann::json grid = nlohmann::json::array();
    for (int l = 0; l < L; ++l) {
      nlohmann::json row = nlohmann::json::array();
      for (int h = 0; h < H; ++h) {
        const double d = after[l][h].item<double>() - before;
        row.push_back(normalise && std::abs(before) > 0 ? d / std::abs(before) : d);
      }
      grid.push_back(row);
    }
    nlohmann::json j;
    j["analysis"] = "ablate";
    j["method"] = analysis::toString(base.method);
    j["head_effect"] = grid;
    j["head_effect_label"] = normalise ? "Δ logit diff / |logit diff before|" : "Δ logit diff";
    j["metric"] = "logit_diff";
    j["metric_before"] = before;
    const auto set = parseHeadList(params["heads"].toString(), L, H, "ablate: head set");
    if (!set.empty()) {
      analysis::AblationParams p = base;
      for (const auto& [l, h] : set) p.heads.push_back({l, h});
      p.knockout = params["knockout"].toBool(false);
      const auto r = analysis::ablate(model, tokens, correct, incorrect, p, &ctx);
      nlohmann::json names = nlohmann::json::array();
      for (const auto& [l, h] : set) names.push_back(std::to_string(l) + "." + std::to_string(h));
      j["heads"] = names;
      j["knockout"] = p.knockout;
      j["ablated_heads"] = r.ablatedHeads;
      j["metric_after"] = r.metricAfter;
      j["accuracy_before"] = r.accuracyBefore;
      j["accuracy_after"] = r.accuracyAfter;
    }
    AnalysisResult r = resultFromCliJson("ablate", j);
    keepFormValues(r, params);
    return r;
  };
}

void wireOverlapAdapter(AnalysisAdapter& a) {
  a.title = "Overlap";
  a.available = true;
  a.needsModel = false;
  a.note = "analysis/circuits overlap of two circuits: CLI `circuit --json` files, or (empty) the workspace's last two Circuit results";
  a.params = {{"circuit_a", "Circuit A (JSON)", QString(), 0, 0, {}, "empty: the second-to-last circuit of this workspace"},
              {"circuit_b", "Circuit B (JSON)", QString(), 0, 0, {}, "empty: the last circuit of this workspace"}};
  a.run = [](const AnalysisInput& in, const QJsonObject& params, const RunContext& ctx) {
    std::vector<nlohmann::json> fromWorkspace;
    for (const auto& r : in.results)
      if (r.analysis == "circuit" && r.params.contains("cli_json"))
        fromWorkspace.push_back(nlohmann::json::parse(r.params["cli_json"].toString().toStdString()));
    auto pick = [&](const QString& key, std::size_t fromEnd) {
      const QString path = params[key].toString().trimmed();
      if (!path.isEmpty()) return readJsonFile(path, "overlap");
      if (fromWorkspace.size() < fromEnd)
        throw InputError("overlap: needs two circuits: run the Circuit panel twice (e.g. two tasks) or give two `circuit --json` files");
      return fromWorkspace[fromWorkspace.size() - fromEnd];
    };
    const auto ja = pick("circuit_a", 2), jb = pick("circuit_b", 1);
    ctx.check();
    const auto ca = analysis::circuitFromJson(ja, "circuit A"), cb = analysis::circuitFromJson(jb, "circuit B");
    const auto o = analysis::circuitOverlap(ca, cb);
    ctx.step(1, 1, "overlap");
    AnalysisResult r = resultFromCliJson("overlap", analysis::toJson(o));
    keepFormValues(r, params);
    r.params["task_a"] = QString::fromStdString(ca.task);
    r.params["task_b"] = QString::fromStdString(cb.task);
    return r;
  };
}

}  // namespace mechscope::gui
