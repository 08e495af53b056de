#include "app/gui/plugin_adapter.hpp"

#include <algorithm>

#include "analysis/common/datasets.hpp"
#include "app/gui/cli_result_view.hpp"
#include "core/common/errors.hpp"

namespace mechscope::gui {

namespace {

ParamSpec specOf(const analysis::ParamInfo& p) {
  using analysis::ParamType;
  ParamSpec s;
  s.key = QString::fromStdString(p.key);
  s.label = titleOf(p.key);
  s.tooltip = QString::fromStdString(p.doc);
  s.minimum = std::max(p.minimum, -1e9);
  s.maximum = std::min(p.maximum, 1e9);
  const QString def = QString::fromStdString(p.defaultValue);
  switch (p.type) {
    case ParamType::Int: s.defaultValue = def.isEmpty() ? 0 : def.toInt(); break;
    case ParamType::Float: s.defaultValue = def.isEmpty() ? 0.0 : def.toDouble(); break;
    case ParamType::Bool: s.defaultValue = def == "true" || def == "1"; break;
    case ParamType::Choice:
      for (const auto& c : p.choices) s.choices << QString::fromStdString(c);
      s.defaultValue = def.isEmpty() && !s.choices.isEmpty() ? s.choices.front() : def;
      break;
    default: s.defaultValue = def; break;
  }
  return s;
}

}  // namespace

analysis::CausalDataset pairDataset(const AnalysisInput& in, const std::string& name) {
  if (!in.patching)
    throw InputError(name + ": give a dataset (ioi, colored-objects or a JSONL file), or run the Patching panel's clean + corrupted pair");
  analysis::CausalDataset ds;
  ds.task = "patching pair";
  analysis::CausalPrompt p;
  p.cleanIds = in.patching->cleanIds();
  p.corruptedIds = in.patching->corruptIds();
  p.answerId = in.patching->answer();
  p.incorrectId = in.patching->incorrect();
  p.positions["END"] = static_cast<int64_t>(p.cleanIds.size()) - 1;
  ds.prompts.push_back(std::move(p));
  return ds;
}

analysis::ParamValues pluginParamValues(const analysis::AnalysisDescriptor& d, const QJsonObject& form) {
  using analysis::ParamType;
  analysis::ParamValues v(d);
  for (const auto& p : d.params) {
    const QJsonValue x = form[QString::fromStdString(p.key)];
    if (x.isUndefined() || x.isNull()) continue;
    QString text;
    if (x.isBool()) text = x.toBool() ? "true" : "false";
    else if (x.isDouble()) text = p.type == ParamType::Int ? QString::number(static_cast<qint64>(x.toDouble())) : QString::number(x.toDouble(), 'g', 17);
    else text = x.toString().trimmed();
    if (text.isEmpty()) continue;
    v.set(p.key, text.toStdString());
  }
  return v;
}

AnalysisAdapter pluginAdapter(const analysis::AnalysisPlugin& plugin) {
  const auto& d = plugin.descriptor;
  AnalysisAdapter a;
  a.name = QString::fromStdString(d.name);
  a.title = a.name;
  a.summary = QString::fromStdString(d.summary);
  a.available = true;
  a.needsModel = true;
  const bool dataset = plugin.input == analysis::PluginInput::Dataset;
  a.note = dataset ? "on a dataset (ioi, colored-objects or a JSONL file), as `mechscope-cli " + a.name + " --dataset`"
                   : "on the workspace's prompt, as `mechscope-cli " + a.name + " --prompt`";
  if (dataset) {
    a.params.push_back({"dataset", "Dataset", QString("ioi"), 0, 0, {},
                        "ioi, colored-objects or a JSONL file (as --dataset); empty: the Patching panel's clean/corrupted pair"});
    a.params.push_back({"n", "Prompts", 50, 1, 100000, {}, "prompts to generate for ioi / colored-objects"});
    a.params.push_back({"corruption", "IOI corruption", QString("abc"), 0, 0, {"abc", "s2-io"},
                        "abc: IO, S1, S2 replaced by three other names (Wang et al.); s2-io: S2 replaced by IO (Merullo et al.)"});
  }
  for (const auto& p : d.params)
    if (!p.flag.empty()) a.params.push_back(specOf(p));
  const std::string name = d.name;
  a.run = [name](const AnalysisInput& in, const QJsonObject& form, const RunContext& ctx) {
    const analysis::AnalysisPlugin* plugin = analysis::findPlugin(name);
    if (!plugin) throw InputError(name + ": the analysis is no longer registered");
    if (!in.session || !in.session->model) throw InputError(name + ": no model loaded; open a model first");
    const analysis::ParamValues values = pluginParamValues(plugin->descriptor, form);
    values.check();  // before any compute
    const Tokenizer* tok = in.session->tokenizer ? &*in.session->tokenizer : nullptr;
    analysis::PluginInputs pin;
    pin.model = in.session->model.get();
    pin.tokenizer = tok;
    analysis::CausalDataset ds;
    if (plugin->input == analysis::PluginInput::Dataset) {
      const std::string task = form["dataset"].toString("ioi").trimmed().toStdString();
      if (!task.empty()) {
        analysis::CausalSource src;
        src.task = task;
        src.n = form["n"].toInt(50);
        src.ioiCorruption = form["corruption"].toString() == "s2-io" ? analysis::IoiCorruption::S2Io : analysis::IoiCorruption::Abc;
        const std::optional<int64_t> bos = tok && tok->bosId() ? tok->bosId() : in.session->model->config().bosTokenId;
        ds = analysis::loadCausalDataset(src, tok, bos);
      } else {
        ds = pairDataset(in, name);
      }
      pin.dataset = &ds;
    } else {
      if (in.tokens.ids.empty()) throw InputError(name + ": the prompt has no tokens; type a prompt first");
      pin.rows = {in.tokens.ids};
      pin.texts = {in.prompt.toStdString()};
    }
    const analysis::AnalysisResult out = plugin->run(pin, values, &ctx);
    // Per-token axes: the analysis' own labels when it extends the prompt (e.g. a response), else the prompt's.
    QStringList labels = in.tokens.display;
    if (out.json.contains("token_labels") && out.json["token_labels"].is_array()) {
      labels.clear();
      for (const auto& l : out.json["token_labels"]) labels << QString::fromStdString(l.get<std::string>());
    }
    AnalysisResult r = resultFromCliJson(name, out.json, labels);
    keepFormValues(r, form);
    return r;
  };
  return a;
}

}  // namespace mechscope::gui
