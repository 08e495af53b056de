// Every example plan under examples/ parses (the files they name are checked by the CLI test).
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "app/batch/plan.hpp"
#include "app/batch/work_items.hpp"

namespace mechscope::batch {
namespace {
namespace fs = std::filesystem;

TEST(BatchExamples, EveryExamplePlanParses) {
  const fs::path dir = fs::path(MECHSCOPE_SOURCE_DIR) / "examples";
  int plans = 0;
  for (const auto& e : fs::directory_iterator(dir)) {
    if (e.path().extension() != ".toml") continue;
    std::ifstream in(e.path());
    std::stringstream ss;
    ss << in.rdbuf();
    try {
      const Plan p = parsePlan(ss.str(), e.path().filename().string());
      EXPECT_FALSE(expandItems(p).empty()) << e.path();
    } catch (const PlanError& err) {
      ADD_FAILURE() << err.what();
    }
    ++plans;
  }
  EXPECT_GE(plans, 2);
}

}  // namespace
}  // namespace mechscope::batch
