// One mechscope-cli subcommand per analysis plugin (analysis/common/analysis_plugin.hpp), built from its
// table entry: the input options its input kind needs (--prompt/--prompt-file/--token-ids, --dataset with
// --n/--seed, --token-ids or none for a needle-in-a-haystack grid, or positional files and no model), one
// option per parameter (help, default and range from the table), --device, --dtype, --json and --out. The
// callback prepares the inputs, runs the plugin, writes the result and prints the headline. Nothing here is
// specific to one analysis.
#include <cctype>
#include <iostream>
#include <map>
#include <memory>

#include <fmt/format.h>

#include "analysis/common/analysis_plugin.hpp"
#include "analysis/common/datasets.hpp"
#include "app/cli/analysis_common_options.hpp"
#include "app/cli/causal_dataset_options.hpp"
#include "app/cli/command.hpp"
#include "app/cli/plugin_commands.hpp"
#include "core/common/errors.hpp"

namespace mechscope::cli {

namespace {

/// What CLI11 fills for one plugin subcommand.
struct PluginCliOptions {
  AnalysisCommonOptions common;
  CausalDatasetOptions data;
  std::map<std::string, std::string> text;                ///< single-valued parameters
  std::map<std::string, std::vector<std::string>> lists;  ///< repeated options
  std::map<std::string, bool> flags;                      ///< Bool parameters
  std::vector<std::string> files;                         ///< PluginInput::Files: the positional input files
};

bool repeated(const analysis::ParamInfo& p) {
  return p.repeat || p.type == analysis::ParamType::RangeList || p.type == analysis::ParamType::StringList;
}

std::string helpOf(const analysis::ParamInfo& p) {
  std::string h = p.doc.empty() ? p.key : p.doc;
  if (!p.defaultValue.empty() && p.type != analysis::ParamType::Bool) h += " (default " + p.defaultValue + ")";  // a flag has no value
  return h;
}

/// The attention-path switch: a parameter "materialize" is the common --materialize (with --force and the
/// memory check of readInputRows) and decides the provenance's attention path.
bool hasMaterialize(const analysis::AnalysisDescriptor& d) { return analysis::findParam(d.params, "materialize") != nullptr; }

void addParamOption(CLI::App* sub, PluginCliOptions& o, const analysis::ParamInfo& p) {
  using analysis::ParamType;
  if (p.flag.empty() || p.key == "materialize") return;
  if (p.type == ParamType::Bool) {
    sub->add_flag(p.flag, o.flags[p.key], helpOf(p));
    return;
  }
  if (repeated(p)) {
    sub->add_option(p.flag, o.lists[p.key], helpOf(p));
    return;
  }
  CLI::Option* opt = sub->add_option(p.flag, o.text[p.key], helpOf(p));
  // Types and ranges are checked by ParamValues::check() before the model loads (one message for CLI and GUI).
  if (p.type == ParamType::Choice) opt->check(CLI::IsMember(p.choices));
  else if (p.type == ParamType::Int) opt->type_name("INT");
  else if (p.type == ParamType::Float) opt->type_name("NUMBER");
  else if (p.type == ParamType::HeadList) opt->type_name("L.H,...");
  else if (p.type == ParamType::Range) opt->type_name("A:B");
  if (p.type == ParamType::File) opt->check(CLI::ExistingFile);
}

/// The parameter values the user gave (the table supplies the rest).
analysis::ParamValues givenValues(const analysis::AnalysisPlugin& plugin, const PluginCliOptions& o, const CLI::App* sub) {
  analysis::ParamValues v(plugin.descriptor);
  if (hasMaterialize(plugin.descriptor) && o.common.materialize) v.set("materialize", "true");
  for (const auto& p : plugin.descriptor.params) {
    if (p.flag.empty() || p.key == "materialize" || sub->count(p.flag) == 0) continue;
    if (p.type == analysis::ParamType::Bool) v.set(p.key, o.flags.at(p.key) != p.invert ? "true" : "false");
    else if (repeated(p)) v.setList(p.key, o.lists.at(p.key));
    else v.set(p.key, o.text.at(p.key));
  }
  v.check();
  return v;
}

/// A plugin without a model (PluginInput::Files): its positional files in, the JSON (when --json) and the
/// summary out.
void runFilesPlugin(const analysis::AnalysisPlugin& plugin, PluginCliOptions& o, const CLI::App* sub) {
  o.common.validateOutputs(plugin.descriptor.name, false);
  const analysis::ParamValues values = givenValues(plugin, o, sub);
  analysis::PluginInputs in;
  in.files = o.files;
  const analysis::AnalysisResult result = plugin.run(in, values, &processContext());
  if (!o.common.json.empty()) analysis::writeResultJson(result, o.common.json);
  std::cout << analysis::pluginHeadline(plugin.descriptor, result) << '\n';
}

void runPlugin(const analysis::AnalysisPlugin& plugin, PluginCliOptions& o, const CLI::App* sub) {
  const std::string& name = plugin.descriptor.name;
  if (plugin.input == analysis::PluginInput::Files) return runFilesPlugin(plugin, o, sub);
  const bool dataset = plugin.input == analysis::PluginInput::Dataset;
  // A needle-in-a-haystack analysis builds its own prompts unless given one prepared row (--token-ids).
  const bool grid = plugin.input == analysis::PluginInput::NiahGrid && o.common.tokenIds.empty();
  if (dataset && o.data.dataset.empty() && o.data.cleanIds.empty())
    throw InputError(name + ": give the prompts: --dataset ioi|colored-objects|FILE.jsonl, or --clean-ids/--corrupt-ids/--answer-ids");
  if (dataset || grid) o.common.validateOutputs(name);
  else o.common.validate(name);
  if (grid && (!o.common.prompts.empty() || !o.common.promptFile.empty()))
    throw InputError(name + ": the protocol builds its own prompts (--haystack, --needles); use --token-ids for a prepared input");
  const analysis::ParamValues values = givenValues(plugin, o, sub);
  attachStderrProgress(name);
  const LoadedModel m = loadAnalysisModel(o.common);
  analysis::PluginInputs in;
  in.model = m.model.get();
  in.tokenizer = m.tokenizer ? &*m.tokenizer : nullptr;
  in.modelFolder = o.common.model;
  in.device = o.common.device;
  in.dtype = o.common.dtype;
  in.outputPath = o.common.json.empty() ? o.common.out : o.common.json;
  in.note = [name](const std::string& line) { std::cerr << name << ": " << line << '\n'; };
  analysis::CausalDataset ds;
  if (dataset) {
    ds = o.data.load(m);
    in.dataset = &ds;
    in.seed = o.data.seed;
  } else if (!grid) {
    in.rows = readInputRows(o.common, m, name);
    in.texts = inputTexts(o.common);
    in.addSpecialTokens = !o.common.noPrependBos;
    if (plugin.descriptor.oneSequence) in.rows.resize(1);
  }
  const analysis::AnalysisResult result = plugin.run(in, values, &processContext());
  const std::string path = hasMaterialize(plugin.descriptor) ? (o.common.materialize ? "materialized" : "probe") : plugin.attentionPath;
  writeAnalysisOutputs(o.common, result, m, path);
  std::cout << analysis::pluginHeadline(plugin.descriptor, result) << '\n';
}

}  // namespace

void addPluginCommand(CLI::App& root, const analysis::AnalysisPlugin& plugin) {
  const auto& d = plugin.descriptor;
  auto o = std::make_shared<PluginCliOptions>();
  std::string description = d.summary;  // the table's summary is lower-case (it also reads inside sentences)
  if (!description.empty()) description[0] = static_cast<char>(std::toupper(static_cast<unsigned char>(description[0])));
  CLI::App* sub = root.add_subcommand(d.name, description);
  if (plugin.input == analysis::PluginInput::Files) {
    // No model: one positional file per input (A B ...), the JSON only on request.
    o->files.resize(d.inputFiles.size());
    for (size_t i = 0; i < d.inputFiles.size(); ++i) {
      const analysis::ParamInfo* p = analysis::findParam(d.params, d.inputFiles[i]);
      std::string positional = d.inputFiles[i];
      for (char& c : positional) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
      sub->add_option(positional, o->files[i], p && !p->doc.empty() ? p->doc : d.inputFiles[i])->required();
    }
    sub->add_option("--json", o->common.json, "Write the result as JSON (keys in docs/cli.md)");
  } else if (plugin.input == analysis::PluginInput::Dataset) {
    sub->add_option("--model", o->common.model, "Hugging Face model folder")->required();
    o->data.add(sub, "ioi, colored-objects (generated with the tokenizer) or FILE.jsonl; or give --clean-ids", false,
                "JSON file: [[ids], ...] corrupted prompts (with --clean-ids and --answer-ids)", true);
    o->common.addRunAndOutputs(sub);
  } else {
    o->common.add(sub, hasMaterialize(d));
  }
  for (const auto& p : d.params) addParamOption(sub, *o, p);
  const analysis::AnalysisPlugin* stable = analysis::findPlugin(d.name);  // lives as long as the process
  sub->callback([o, sub, stable] {
    o->common.finishCommandLine(sub);
    runPlugin(*stable, *o, sub);
  });
}

namespace {
// After the hand-written commands (order 90): a plugin whose name a hand-written command already has is skipped.
const RegisterCommand reg_plugin_commands{"(analysis plugins)", 90, [](CLI::App& root) {
  analysis::installAnalysisPlugins();
  for (const auto& plugin : analysis::analysisPlugins())
    if (root.get_subcommands([&](CLI::App* a) { return a->get_name() == plugin.descriptor.name; }).empty())
      addPluginCommand(root, plugin);
}};
}  // namespace

}  // namespace mechscope::cli
