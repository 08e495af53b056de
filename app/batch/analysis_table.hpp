#pragma once
// What the batch runner knows about each analysis and input kind, as tables: the plan keys, their
// types, the mechscope-cli option each becomes, and which inputs an analysis accepts.
#include <string>
#include <string_view>
#include <vector>

#include "analysis/common/registry.hpp"

namespace mechscope::batch {

// The analyses' parameter tables live in analysis/common/registry.hpp (one table for every front end).
using analysis::describe;
using analysis::findAnalysis;
using analysis::findParam;
using analysis::ParamInfo;
using analysis::ParamType;

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

/// Every input kind.
const std::vector<InputKindInfo>& inputKindTable();
/// The input kind, or nullptr.
const InputKindInfo* findInputKind(std::string_view kind);

}  // namespace mechscope::batch
