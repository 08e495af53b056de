// The tests' scratch root (tests/common/scratch_root.hpp) is removed when the process that made it exits,
// and only by that process: a forked child that exits leaves its parent's files alone.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "tests/common/scratch_root.hpp"

namespace mechscope::test {
namespace {

namespace fs = std::filesystem;

/// Runs `body` in a forked child that then exits normally (static destructors run); returns its exit status.
template <class Fn>
int inChildThatExits(Fn body) {
  const pid_t pid = ::fork();
  if (pid == 0) {
    body();
    std::exit(0);
  }
  int status = 0;
  ::waitpid(pid, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

TEST(ScratchRoot, AChildThatExitsRemovesOnlyTheRootItMade) {
  const fs::path parentRoot = scratchRoot();
  const fs::path parentFile = freshScratchDir("kept") / "f";
  std::ofstream(parentFile) << "x";

  // The child inherits the parent's scratch-root owner, already built, with the parent's pid.
  ASSERT_EQ(inChildThatExits([&] { std::ofstream(scratchRoot() / "from-child") << "z"; }), 0);
  EXPECT_TRUE(fs::exists(parentFile)) << "a forked child's exit removed the parent's scratch root";

  // A process that makes its own root (a child that first uses it after the fork) removes it on exit.
  std::string ownRoot;
  const fs::path report = parentRoot / "own-root";
  ASSERT_EQ(inChildThatExits([&] {
              static const detail::ScratchRootOwner own;  // what scratchRoot() builds in a process of its own
              std::ofstream(own.path() / "f") << "y";
              std::ofstream(report) << own.path().string();
            }),
            0);
  std::ifstream(report) >> ownRoot;
  ASSERT_FALSE(ownRoot.empty());
  EXPECT_NE(fs::path(ownRoot), parentRoot);
  EXPECT_FALSE(fs::exists(ownRoot)) << ownRoot << " outlived the process that made it";
  EXPECT_TRUE(fs::exists(parentRoot / "from-child"));
}

}  // namespace
}  // namespace mechscope::test
