#pragma once
// The one table of analyses (issue #21): for each, its name (the mechscope-cli subcommand and the batch
// plan type), a one-line summary, the inputs it runs on and its parameter table (plan key, type, the
// CLI option it becomes). `mechscope-cli list`, the batch planner (keys, types, validation, command
// lines), the GUI's analysis menu and the demo read it; tests/cli/registry_flags.sh checks that every
// option named here exists in the subcommand's --help. Standard library only, header-only, so the
// torch-free batch library and the Qt views can include it.
//
// Analyses written as plugins (analysis/common/analysis_plugin.hpp) add their descriptor at start-up
// (registerAnalysisDescriptor); for them the CLI option, its help, default and range, the GUI form field
// and the batch headline all come from this table.
#include <algorithm>
#include <string>
#include <string_view>
#include <vector>

namespace mechscope::analysis {

/// The type a parameter's value must have (in a batch plan; the CLI option takes the same text).
enum class ParamType {
  Int,         ///< TOML integer
  Float,       ///< TOML float or integer
  Bool,        ///< TOML boolean
  String,      ///< TOML string
  Choice,      ///< TOML string, one of `choices`
  Range,       ///< "a:b" (two integers)
  RangeList,   ///< "a:b" or an array of them (the option is repeated)
  StringList,  ///< a string or an array of strings (the option is repeated)
  HeadList,    ///< "9.9,10.0" or ["9.9", "10.0"] (LAYER.HEAD, optionally @ROLE)
  IntList,     ///< an integer, an array of integers or "1,-1" (joined with commas)
  File,        ///< a path (relative to the plan's folder); must exist
};

/// Name of a ParamType for messages ("an integer", ...).
inline std::string_view describe(ParamType t) {
  switch (t) {
    case ParamType::Int: return "an integer";
    case ParamType::Float: return "a number";
    case ParamType::Bool: return "true or false";
    case ParamType::String: return "a string";
    case ParamType::Choice: return "one of the listed strings";
    case ParamType::Range: return "a string \"START:END\"";
    case ParamType::RangeList: return "\"START:END\" or an array of them";
    case ParamType::StringList: return "a string or an array of strings";
    case ParamType::HeadList: return "\"LAYER.HEAD,...\" or an array of \"LAYER.HEAD\" strings";
    case ParamType::IntList: return "an integer, an array of integers or \"1,-1\"";
    case ParamType::File: return "a file path (string)";
  }
  return "a value";
}

/// One parameter of an analysis (or input kind) and the CLI option it becomes.
struct ParamInfo {
  std::string key{};
  ParamType type = ParamType::String;
  std::string flag{};                 ///< mechscope-cli option ("" = not passed on)
  std::vector<std::string> choices{};  ///< for Choice
  bool invert = false;               ///< Bool: the flag is passed when the value is false (e.g. success_filter)
  bool repeat = false;               ///< IntList: one option per value instead of a comma list
  std::string doc{};                 ///< one line: the CLI option's help and the GUI field's tooltip
  std::string defaultValue{};        ///< the value when not given, as the option's text ("" = none)
  double minimum = -1e300;           ///< Int/Float: the smallest value accepted
  double maximum = 1e300;            ///< Int/Float: the largest value accepted
  bool roles = false;                ///< HeadList: LAYER.HEAD@ROLE items are accepted (e.g. ablate's knockout)
};

/// A parameter with its help line and default (the plugins' way to write their table).
inline ParamInfo makeParam(std::string key, ParamType type, std::string flag, std::string doc, std::string defaultValue = "") {
  ParamInfo p;
  p.key = std::move(key);
  p.type = type;
  p.flag = std::move(flag);
  p.doc = std::move(doc);
  p.defaultValue = std::move(defaultValue);
  return p;
}

/// `p` accepting only values in [minimum, maximum] (Int/Float), checked before any compute.
inline ParamInfo bounded(ParamInfo p, double minimum, double maximum = 1e300) {
  p.minimum = minimum;
  p.maximum = maximum;
  return p;
}

/// One analysis: everything the front ends derive from.
struct AnalysisDescriptor {
  std::string name;                       ///< CLI subcommand and plan type, e.g. "sinks"
  std::string summary;                    ///< one line for `mechscope-cli list` and menus
  std::vector<std::string> acceptsKinds;  ///< batch input kinds it runs on (empty: none, e.g. overlap)
  bool oneSequence = false;               ///< runs on one token row (the first prompt of a dataset)
  std::vector<ParamInfo> params;
  std::vector<std::string> required;      ///< plan keys that must be present
  std::vector<std::string> figureKeys;    ///< result keys drawn as figures ([L][H] grids or [L][N] maps)
  bool available = true;                  ///< false while the analysis is not implemented in this build
  std::string title{};                    ///< plugins: the GUI tab's title ("" = the name)
  std::vector<std::string> headlineKeys{};  ///< plugins: scalar result keys the CLI and the batch summary headline
  std::vector<std::string> lineKeys{};    ///< plugins: per-token result keys ([pos], or [prompt][pos]: the first) drawn as lines
  bool plugin = false;                    ///< true: run through analysis/common/analysis_plugin.hpp (CLI, GUI derived)
  std::vector<std::string> exampleArgs{}; ///< plugins: options of an example run on the planted model (the demo)
  /// Analyses without a model (e.g. overlap): the keys of their input files, in order: the CLI's positional
  /// arguments, the GUI's file fields; in batch plans each holds "ANALYSIS_ID@INPUT_ID", that item's result.
  std::vector<std::string> inputFiles{};
  std::string inputFilesFrom{};           ///< the analysis whose results the input files are (e.g. "circuit")
};


namespace registry_detail {
/// The built-in table (below).
inline std::vector<AnalysisDescriptor> builtinAnalyses();
/// The table every front end reads: the built-in entries, then registered plugins.
inline std::vector<AnalysisDescriptor>& mutableRegistry() {
  static std::vector<AnalysisDescriptor> table = builtinAnalyses();
  return table;
}
}  // namespace registry_detail

/// Every analysis, in menu order (built-in entries first, then plugins in registration order).
inline const std::vector<AnalysisDescriptor>& analysisRegistry() { return registry_detail::mutableRegistry(); }

/// Adds a plugin's descriptor; replaces an earlier one of the same name (registration is idempotent).
inline void registerAnalysisDescriptor(AnalysisDescriptor d) {
  auto& t = registry_detail::mutableRegistry();
  const auto it = std::find_if(t.begin(), t.end(), [&](const AnalysisDescriptor& a) { return a.name == d.name; });
  if (it != t.end()) *it = std::move(d);
  else t.push_back(std::move(d));
}

namespace registry_detail {
/// Every analysis is a plugin now (issue #21): the table starts empty and the plugins register their entries.
inline std::vector<AnalysisDescriptor> builtinAnalyses() { return {}; }
}  // namespace registry_detail

/// The analysis of that name, or nullptr.
inline const AnalysisDescriptor* findAnalysis(std::string_view name) {
  const auto& t = analysisRegistry();
  const auto it = std::find_if(t.begin(), t.end(), [&](const AnalysisDescriptor& a) { return a.name == name; });
  return it == t.end() ? nullptr : &*it;
}

/// The parameter of that key, or nullptr.
inline const ParamInfo* findParam(const std::vector<ParamInfo>& params, std::string_view key) {
  const auto it = std::find_if(params.begin(), params.end(), [&](const ParamInfo& p) { return p.key == key; });
  return it == params.end() ? nullptr : &*it;
}

}  // namespace mechscope::analysis
