#include "app/gui/causal_analysis_adapters.hpp"

#include <ATen/ATen.h>

#include <QFile>
#include <QJsonArray>
#include <QRegularExpression>


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
