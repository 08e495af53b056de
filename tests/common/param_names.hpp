#pragma once
// GoogleTest parameter names from strings such as model folder names ("llama2-niah" → "llama2_niah":
// a test name may hold only letters, digits and '_').
#include <gtest/gtest.h>

#include <string>

namespace mechscope::test {

/// Name generator for INSTANTIATE_TEST_SUITE_P over std::string parameters: '-' and '.' become '_'.
inline std::string identifierName(const ::testing::TestParamInfo<std::string>& info) {
  std::string s = info.param;
  for (auto& ch : s)
    if (ch == '-' || ch == '.') ch = '_';
  return s;
}

}  // namespace mechscope::test
