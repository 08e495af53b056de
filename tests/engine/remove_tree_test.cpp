// mechscope::removeTree, the replacement of std::filesystem::remove_all, which crashed (address 0) in
// binaries linked to PyTorch 2.x's libtorch.so on any non-empty folder (core/common/remove_tree.hpp).
// Here in the engine tests because that binary is the one built and run against LibTorch 2.x on the GPU box.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <system_error>

#include "core/common/remove_tree.hpp"
#include "engine_test_support.hpp"

namespace fs = std::filesystem;

TEST(RemoveTree, NonEmptyTreeCountsEveryEntryAndKeepsLinkTargets) {
  const fs::path d = mechscope::test::tempDir("remove_tree");
  const fs::path keep = mechscope::test::tempDir("remove_tree_keep");
  fs::create_directories(d / "a" / "b");
  { std::ofstream(d / "top.txt") << "x"; }
  { std::ofstream(d / "a" / "b" / "leaf.txt") << "y"; }
  { std::ofstream(keep / "target.txt") << "z"; }
  fs::create_directory_symlink(keep, d / "a" / "link");  // removed as a link, never followed
  // d, top.txt, a, a/b, a/b/leaf.txt, a/link
  EXPECT_EQ(mechscope::removeTree(d), 6u);
  EXPECT_FALSE(fs::exists(d));
  EXPECT_TRUE(fs::exists(keep / "target.txt"));
  EXPECT_EQ(mechscope::removeTree(keep), 2u);
}

TEST(RemoveTree, MissingPathIsZeroAndAFileIsOne) {
  const fs::path d = mechscope::test::tempDir("remove_tree_file");
  EXPECT_EQ(mechscope::removeTree(d / "nothing"), 0u);
  EXPECT_EQ(mechscope::removeTree(fs::path()), 0u);
  { std::ofstream(d / "f.txt") << "x"; }
  EXPECT_EQ(mechscope::removeTree(d / "f.txt"), 1u);
  EXPECT_EQ(mechscope::removeTree(d), 1u);
}

TEST(RemoveTree, ErrorsNameThePath) {
  const fs::path d = mechscope::test::tempDir("remove_tree_err");
  { std::ofstream(d / "f.txt") << "x"; }
  std::error_code ec;
  EXPECT_EQ(mechscope::removeTree(d / "f.txt" / "under", ec), 0u);  // a file is no folder: ENOTDIR
  EXPECT_EQ(ec, std::errc::not_a_directory);
  try {
    mechscope::removeTree(d / "f.txt" / "under");
    ADD_FAILURE() << "no exception";
  } catch (const std::system_error& e) {
    EXPECT_NE(std::string(e.what()).find("f.txt/under"), std::string::npos) << e.what();
  }
  EXPECT_EQ(mechscope::removeTree(d), 2u);
}
