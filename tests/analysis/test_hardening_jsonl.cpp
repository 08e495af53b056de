// JSONL datasets refuse malformed fields with the file and line (issue 12 fuzz finding:
// tests/data/fuzz_regressions/jsonl_dataset/template-string-type-error.jsonl escaped as a raw
// nlohmann type_error instead of an InputError).
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "analysis/common/datasets.hpp"
#include "core/common/errors.hpp"
#include "tests/common/scratch_root.hpp"

using namespace mechscope;

TEST(HardeningJsonl, TemplateMustBeAnInteger) {
  const auto p = test::scratchRoot() / "hardening.jsonl";
  {
    std::ofstream out(p);
    out << R"({"clean_ids": [4, 0], "corrupted_ids": [4, 1], "answer": 0, "incorrect": 1, "template": 3})" << "\n";
    out << R"({"clean_ids": [4, 0], "corrupted_ids": [4, 1], "answer": 0, "incorrect": 1, "template": "x"})" << "\n";
  }
  try {
    (void)analysis::readJsonl(p);
    ADD_FAILURE() << "no InputError";
  } catch (const InputError& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find(p.string() + ":2:"), std::string::npos) << msg;
    EXPECT_NE(msg.find("\"template\""), std::string::npos) << msg;
  }
  {
    std::ofstream out(p);
    out << R"({"clean_ids": [4, 0], "corrupted_ids": [4, 1], "answer": 0, "incorrect": 1, "template": 3})" << "\n";
  }
  const auto ds = analysis::readJsonl(p);
  ASSERT_EQ(ds.prompts.size(), 1u);
  EXPECT_EQ(ds.prompts[0].templateId, 3);
  EXPECT_EQ(ds.prompts[0].cleanIds, (std::vector<int64_t>{4, 0}));
  std::filesystem::remove(p);
}
