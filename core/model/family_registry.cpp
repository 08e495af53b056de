#include "core/model/family_registry.hpp"

#include <fmt/format.h>

#include "core/model/family_spec.hpp"

namespace mechscope {

// The one table of families: adding a family = one file under families/ + one line here
// (see docs/adding-a-model.md).
const std::vector<const FamilySpec*>& familySpecs() {
  static const std::vector<const FamilySpec*> table = {
      &gpt2Family(), &gptNeoxFamily(), &llamaFamily(), &mistralFamily(), &qwen2Family(), &qwen3Family(),
      &phi3Family(), &olmo2Family(), &gemma2Family(), &gemma3TextFamily(), &gemma3Family(),
      &mixtralFamily(), &qwen2MoeFamily(), &qwen3MoeFamily(), &gptOssFamily(),
  };
  return table;
}

const FamilySpec* findFamily(const std::string& modelType) {
  for (const auto* f : familySpecs())
    if (f->modelType == modelType) return f;
  return nullptr;
}

std::string supportedModelTypes() {
  std::vector<std::string> names;
  for (const auto* f : familySpecs()) names.push_back(f->modelType);
  return fmt::format("{}", fmt::join(names, ", "));
}

const std::vector<FamilyInfo>& supportedFamilies() {
  static const std::vector<FamilyInfo> table = [] {
    std::vector<FamilyInfo> out;
    for (const auto* f : familySpecs()) out.push_back(FamilyInfo{f->modelType, f->description});
    return out;
  }();
  return table;
}

}  // namespace mechscope
