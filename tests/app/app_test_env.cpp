// Every app test runs inside one offscreen QApplication (created before the first test).
#include <gtest/gtest.h>

#include <QCoreApplication>

#include "views/offscreen.hpp"

namespace {

class AppEnvironment : public ::testing::Environment {
 public:
  void SetUp() override {
    mechscope::views::ensureGuiApplication();
    QCoreApplication::setOrganizationName("mechscope-tests");
    QCoreApplication::setApplicationName("mechscope-tests");
  }
};

[[maybe_unused]] ::testing::Environment* const kEnv = ::testing::AddGlobalTestEnvironment(new AppEnvironment);

}  // namespace
