// The one parser of integer lists (analysis::parseIntegerList: IntList parameters of every analysis and the
// causal commands' --answer-ids; it replaced datasets.cpp's parseIdList): strict, the whole list in the message.
#include <gtest/gtest.h>

#include <string>

#include "analysis/common/param_values.hpp"
#include "core/common/errors.hpp"

using mechscope::InputError;
using mechscope::analysis::parseIntegerList;

TEST(BatchParams, IntegerListsParseWithSpacesAndSigns) {
  EXPECT_EQ(parseIntegerList("1,-1, 3", "x"), (std::vector<int64_t>{1, -1, 3}));
  EXPECT_EQ(parseIntegerList(" 7 ", "x"), (std::vector<int64_t>{7}));
}

TEST(BatchParams, IntegerListsRefuseEmptyAndBadItemsQuotingTheList) {
  for (const std::string bad : {"", "1,,2", "1,", ",1", "1,x", "1.5", "9999999999999999999999"}) {
    try {
      (void)parseIntegerList(bad, "ablate --positions");
      ADD_FAILURE() << "accepted '" << bad << "'";
    } catch (const InputError& e) {
      EXPECT_EQ(std::string(e.what()), "ablate --positions: '" + bad + "' is not a comma-separated list of integers");
    }
  }
}
