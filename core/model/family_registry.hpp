#pragma once
// The table of supported model families (one mapping file each under core/model/families/).
#include <string>
#include <vector>

namespace mechscope {

/// A supported Hugging Face `model_type` and what it covers.
struct FamilyInfo {
  std::string modelType;    ///< config.json model_type, e.g. "gpt2"
  std::string description;  ///< one line, e.g. "GPT-2 (learned positions, fused Conv1D QKV)"
};

/// Every supported family, in listing order.
const std::vector<FamilyInfo>& supportedFamilies();

}  // namespace mechscope
