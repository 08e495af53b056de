#pragma once
// What the batch runner knows about each analysis and input kind, as tables: the plan keys, their
// types, the mechscope-cli option each becomes, and which inputs an analysis accepts.
#include <string>
#include <string_view>
#include <vector>

namespace mechscope::batch {

/// The type a plan value must have.
enum class ParamType {
  Int,         ///< TOML integer
  Float,       ///< TOML float or integer
  Bool,        ///< TOML boolean
  String,      ///< TOML string
  Choice,      ///< TOML string, one of `choices`
  Range,       ///< "a:b" (two integers)
  RangeList,   ///< "a:b" or an array of them (the option is repeated)
  StringList,  ///< a string or an array of strings (the option is repeated)
  HeadList,    ///< "9.9,10.0" or ["9.9", "10.0"] (LAYER.HEAD)
  IntList,     ///< an integer, an array of integers or "1,-1" (joined with commas)
  File,        ///< a path (relative to the plan's folder); must exist
};

/// Name of a ParamType for messages ("an integer", ...).
std::string_view describe(ParamType t);

/// One key of an analysis (or input kind) and the CLI option it becomes.
struct ParamInfo {
  std::string key;
  ParamType type;
  std::string flag;                  ///< mechscope-cli option ("" = not passed on)
  std::vector<std::string> choices;  ///< for Choice
  bool invert = false;               ///< Bool: the flag is passed when the value is false (e.g. success_filter)
  bool repeat = false;               ///< IntList: one option per value instead of a comma list
};

/// Which family of inputs an input kind belongs to.
enum class InputFamily {
  Tokens,   ///< prompts, token-ids: token rows
  Dataset,  ///< jsonl, ioi, colored-objects: clean/corrupted pairs (also usable as token rows: the clean prompts)
  Niah,     ///< a needle-in-a-haystack grid (retrieval)
};

/// An input kind ([inputs.ID] kind = ...).
struct InputKindInfo {
  std::string kind;
  InputFamily family;
  std::vector<ParamInfo> params;
  std::vector<std::string> required;  ///< keys that must be present
};

/// An analysis type ([[analysis]] type = ...).
struct AnalysisInfo {
  std::string type;
  std::string command;                 ///< mechscope-cli subcommand
  std::vector<std::string> acceptsKinds;  ///< input kinds it runs on (empty: none, e.g. overlap)
  bool oneSequence = false;            ///< runs on one token row (the first prompt of a dataset)
  std::vector<ParamInfo> params;
  std::vector<std::string> required;
  std::vector<std::string> figureKeys;  ///< result keys drawn as figures ([L][H] grids or [L][N] maps)
};

/// Every analysis the batch runner can run.
const std::vector<AnalysisInfo>& analysisTable();
/// The analysis of that type, or nullptr.
const AnalysisInfo* findAnalysis(std::string_view type);
/// Every input kind.
const std::vector<InputKindInfo>& inputKindTable();
/// The input kind, or nullptr.
const InputKindInfo* findInputKind(std::string_view kind);
/// The key's description in `params`, or nullptr.
const ParamInfo* findParam(const std::vector<ParamInfo>& params, std::string_view key);

}  // namespace mechscope::batch
