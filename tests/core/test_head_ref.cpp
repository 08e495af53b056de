// The one head-list parser (core/common/head_ref.hpp) that the CLI, the batch plans' commands, the GUI
// forms and the GUI's --head use: what it accepts, and that every malformed entry is an InputError that
// names the option and the entry.
#include <gtest/gtest.h>

#include <set>
#include <string>

#include "core/common/head_ref.hpp"

namespace mechscope {
namespace {

TEST(HeadRef, ParsesListsRolesAndSpaces) {
  const auto heads = parseHeadList(" 9.9, 10.0,,3.11 ", "--heads");
  ASSERT_EQ(heads.size(), 3u);
  EXPECT_EQ(heads[0], (HeadRef{9, 9}));
  EXPECT_EQ(heads[1], (HeadRef{10, 0}));
  EXPECT_EQ(heads[2], (HeadRef{3, 11}));
  EXPECT_EQ(toString(heads[2]), "3.11");
  EXPECT_TRUE(parseHeadList("", "--heads").empty());
  const auto specs = parseHeadSpecs("9.9@END,5.5@S1+1,4.0", "--heads", true);
  ASSERT_EQ(specs.size(), 3u);
  EXPECT_EQ(specs[0].role, "END");
  EXPECT_EQ(specs[1].head, (HeadRef{5, 5}));
  EXPECT_EQ(specs[1].role, "S1+1");
  EXPECT_EQ(specs[2].role, "");
  // Ordered like (layer, head) pairs, so sets and sorted lists agree with the old pair type.
  const std::set<HeadRef> s{{2, 1}, {1, 3}, {2, 0}};
  EXPECT_EQ(*s.begin(), (HeadRef{1, 3}));
  EXPECT_EQ(*s.rbegin(), (HeadRef{2, 1}));
}

TEST(HeadRef, MalformedEntriesAreInputErrorsNamingOptionAndEntry) {
  auto message = [](auto&& f) {
    try {
      f();
    } catch (const InputError& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  for (const char* bad : {"9", "9.", ".9", "a.b", "9.9.9", "-1.0", "1.-2", "1.2x"}) {
    const std::string m = message([&] { parseHeadList(bad, "--mask-heads"); });
    EXPECT_NE(m.find("--mask-heads"), std::string::npos) << bad << ": " << m;
    EXPECT_NE(m.find(bad), std::string::npos) << bad << ": " << m;
  }
  EXPECT_NE(message([] { parseHeadList("9.9@END", "--path-senders"); }).find("role"), std::string::npos);
  EXPECT_NE(message([] { parseHeadSpecs("9.9@", "--heads", true); }).find("no role"), std::string::npos);
  const std::string outside = message([] { parseHeadList("1.0,4.2", "--heads", 4, 4); });
  EXPECT_NE(outside.find("4.2"), std::string::npos) << outside;
  EXPECT_NE(outside.find("4 layers"), std::string::npos) << outside;
  EXPECT_EQ(message([] { parseHeadList("3.3", "--heads", 4, 4); }), "no error");
}

}  // namespace
}  // namespace mechscope
