#include "core/model/family_registry.hpp"

namespace mechscope {

// Placeholder table until the family mappings land (issue: engine); they replace this file.
const std::vector<FamilyInfo>& supportedFamilies() {
  static const std::vector<FamilyInfo> table = {};
  return table;
}

}  // namespace mechscope
