#include "app/batch/command_args.hpp"

#include <algorithm>
#include <sstream>

#include "app/batch/analysis_table.hpp"

namespace mechscope::batch {
using nlohmann::json;

InputPrep inputPrep(const WorkItem& item) {
  if (item.input.empty()) return InputPrep::None;
  const std::string kind = item.spec["input"]["kind"].get<std::string>();
  const InputKindInfo* k = findInputKind(kind);
  const analysis::AnalysisDescriptor* a = findAnalysis(item.type);
  // Causal analyses take datasets only; the attention analyses also take prompts (a dataset → its clean rows).
  const bool causal = std::find(a->acceptsKinds.begin(), a->acceptsKinds.end(), "prompts") == a->acceptsKinds.end();
  if (k->family != InputFamily::Dataset) return InputPrep::None;
  if (causal) return kind == "jsonl" ? InputPrep::None : InputPrep::DatasetJsonl;
  return InputPrep::TokenRows;
}

namespace {
/// Appends the options of `params` described by `infos`.
void addParams(std::vector<std::string>& args, const json& params, const std::vector<ParamInfo>& infos) {
  for (const auto& info : infos) {
    if (info.flag.empty() || !params.contains(info.key)) continue;
    const json& v = params[info.key];
    switch (info.type) {
      case ParamType::Bool:
        if (v.get<bool>() != info.invert) args.push_back(info.flag);
        break;
      case ParamType::Int:
        args.insert(args.end(), {info.flag, std::to_string(v.get<int64_t>())});
        break;
      case ParamType::Float:
        args.insert(args.end(), {info.flag, v.dump()});
        break;
      case ParamType::RangeList:
      case ParamType::StringList:
        for (const auto& s : v) args.insert(args.end(), {info.flag, s.get<std::string>()});
        break;
      case ParamType::IntList:
        if (info.repeat) {
          std::stringstream ss(v.get<std::string>());
          for (std::string x; std::getline(ss, x, ',');) args.insert(args.end(), {info.flag, x});
        } else {
          args.insert(args.end(), {info.flag, v.get<std::string>()});
        }
        break;
      default:
        args.insert(args.end(), {info.flag, v.get<std::string>()});
    }
  }
}
}  // namespace

std::vector<std::string> commandArgs(const WorkItem& item, const std::string& modelFolder, bool withH5) {
  const analysis::AnalysisDescriptor* a = findAnalysis(item.type);
  std::vector<std::string> args{a->name};
  if (!a->inputFiles.empty()) {  // no model: the dependencies' results as positional files
    for (const auto& key : a->inputFiles) args.push_back(inputFileName(key));
    args.insert(args.end(), {"--json", kResultJson});
    return args;
  }
  const json& model = item.spec["model"];
  args.insert(args.end(), {"--model", modelFolder, "--device", model["device"].get<std::string>(), "--dtype",
                           model["dtype"].get<std::string>()});
  const json& input = item.spec["input"];
  const std::string kind = input["kind"].get<std::string>();
  const json& ip = input["params"];
  switch (inputPrep(item)) {
    case InputPrep::DatasetJsonl:
      args.insert(args.end(), {item.type == "circuit" ? "--task" : "--dataset", kDatasetFile});
      break;
    case InputPrep::TokenRows:
      args.insert(args.end(), {"--token-ids", kTokenRowsFile});
      break;
    case InputPrep::None:
      if (kind == "jsonl") {
        args.insert(args.end(), {item.type == "circuit" ? "--task" : "--dataset", ip["file"].get<std::string>()});
      } else if (kind == "prompts") {
        addParams(args, ip, findInputKind(kind)->params);
        if (ip.contains("prepend_bos") && !ip["prepend_bos"].get<bool>()) args.push_back("--no-prepend-bos");
      } else {
        addParams(args, ip, findInputKind(kind)->params);  // token-ids, niah
      }
      break;
  }
  addParams(args, item.spec["params"], a->params);
  args.insert(args.end(), {"--json", kResultJson});
  if (withH5) args.insert(args.end(), {"--out", kResultH5});
  return args;
}

}  // namespace mechscope::batch
