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

/// A files analysis' inputs (overlap's two circuits): each file field's path, or (empty) the workspace's
/// latest results of the analysis the files come from, in order (the last result is the last input).
void workspaceFiles(const analysis::AnalysisDescriptor& d, const AnalysisInput& in, const QJsonObject& form, analysis::PluginInputs& pin) {
  const std::string& from = d.inputFilesFrom;
  std::vector<nlohmann::json> fromWorkspace;
  for (const auto& r : in.results)
    if (r.analysis.toStdString() == from && r.params.contains("cli_json"))
      fromWorkspace.push_back(nlohmann::json::parse(r.params["cli_json"].toString().toStdString()));
  const size_t n = d.inputFiles.size();
  for (size_t i = 0; i < n; ++i) {
    const QString path = form[QString::fromStdString(d.inputFiles[i])].toString().trimmed();
    if (!path.isEmpty()) {
      pin.files.push_back(path.toStdString());
      pin.documents.emplace_back();
      continue;
    }
    const size_t fromEnd = n - i;  // the last input takes the last result
    if (fromWorkspace.size() < fromEnd)
      throw InputError(d.name + ": needs " + (n == 2 ? std::string("two") : std::to_string(n)) + " " + from + "s: run the " + from +
                       " panel (e.g. on two tasks) or give `" + from + " --json` files");
    pin.files.push_back("the workspace's " + from + " result " + std::to_string(fromWorkspace.size() - fromEnd + 1));
    pin.documents.push_back(fromWorkspace[fromWorkspace.size() - fromEnd]);
  }
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

analysis::CausalDataset formDataset(const AnalysisInput& in, const QJsonObject& form, const std::string& name) {
  if (!in.session || !in.session->model) throw InputError(name + ": no model loaded; open a model first");
  const std::string task = form["dataset"].toString("ioi").trimmed().toStdString();
  if (task.empty()) return pairDataset(in, name);
  const Tokenizer* tok = in.session->tokenizer ? &*in.session->tokenizer : nullptr;
  analysis::CausalSource src;
  src.task = task;
  src.n = form["n"].toInt(50);
  src.ioiCorruption = form["corruption"].toString() == "s2-io" ? analysis::IoiCorruption::S2Io : analysis::IoiCorruption::Abc;
  const std::optional<int64_t> bos = tok && tok->bosId() ? tok->bosId() : in.session->model->config().bosTokenId;
  return analysis::loadCausalDataset(src, tok, bos);
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
  const bool files = plugin.input == analysis::PluginInput::Files;
  a.needsModel = !files;
  const bool dataset = plugin.input == analysis::PluginInput::Dataset;
  a.note = dataset ? "on a dataset (ioi, colored-objects or a JSONL file), as `mechscope-cli " + a.name + " --dataset`"
           : files ? "on `" + QString::fromStdString(d.inputFilesFrom) + " --json` files, or (empty) the workspace's latest " +
                         QString::fromStdString(d.inputFilesFrom) + " results, as `mechscope-cli " + a.name + " A B`"
           : plugin.input == analysis::PluginInput::NiahGrid
               ? "one needle test on the workspace's prompt, as `mechscope-cli " + a.name + " --token-ids`"
               : "on the workspace's prompt, as `mechscope-cli " + a.name + " --prompt`";
  for (const auto& key : d.inputFiles) {
    const analysis::ParamInfo* p = analysis::findParam(d.params, key);
    a.params.push_back({QString::fromStdString(key), QString::fromStdString(key).toUpper() + " (JSON file)", QString(), 0, 0, {},
                        p ? QString::fromStdString(p->doc) : QString()});
  }
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
    const analysis::ParamValues values = pluginParamValues(plugin->descriptor, form);
    if (plugin->input == analysis::PluginInput::Files) {
      values.check();
      analysis::PluginInputs pin;
      workspaceFiles(plugin->descriptor, in, form, pin);
      AnalysisResult r = resultFromCliJson(name, plugin->run(pin, values, &ctx).json);
      keepFormValues(r, form);
      return r;
    }
    if (!in.session || !in.session->model) throw InputError(name + ": no model loaded; open a model first");
    values.check();  // before any compute
    const Tokenizer* tok = in.session->tokenizer ? &*in.session->tokenizer : nullptr;
    analysis::PluginInputs pin;
    pin.model = in.session->model.get();
    pin.tokenizer = tok;
    analysis::CausalDataset ds;
    if (plugin->input == analysis::PluginInput::Dataset) {
      ds = formDataset(in, form, name);
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
