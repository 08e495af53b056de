// Every views test runs inside one offscreen QApplication (created before the first test).
#include <gtest/gtest.h>

#include "views/offscreen.hpp"

namespace {

class GuiEnvironment : public ::testing::Environment {
 public:
  void SetUp() override { mechscope::views::ensureGuiApplication(); }
};

[[maybe_unused]] ::testing::Environment* const kEnv = ::testing::AddGlobalTestEnvironment(new GuiEnvironment);

}  // namespace
