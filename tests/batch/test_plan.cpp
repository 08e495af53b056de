// Plan parsing: keys, types, references, and every problem reported with its line before any compute.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "app/batch/plan.hpp"
#include "core/common/remove_tree.hpp"
#include "tests/common/scratch_root.hpp"

namespace mechscope::batch {
namespace {

const char* kGood = R"(name = "t"
[output]
report = "html"

[models.planted]
path = "embedded"

[inputs.ioi]
kind = "ioi"
n = 8
seed = 3

[inputs.ids]
kind = "token-ids"
file = "ids.json"

[[analysis]]
type = "sinks"
inputs = ["ids", "ioi"]
sink_threshold = 1

[[analysis]]
id = "ab"
type = "ablate"
inputs = "ioi"
heads = ["3.0", "3.1,2.1"]
positions = [-1]

[[analysis]]
type = "circuit"
inputs = ["ioi"]

[[analysis]]
type = "overlap"
a = "circuit@ioi"
b = "circuit@ioi"
)";

TEST(BatchPlan, ParsesModelsInputsAnalysesAndNormalisesValues) {
  const Plan p = parsePlan(kGood, "good.toml");
  EXPECT_EQ(p.name, "t");
  EXPECT_EQ(p.output.report, "html");
  ASSERT_EQ(p.models.size(), 1u);
  EXPECT_TRUE(p.models[0].embedded());
  ASSERT_EQ(p.inputs.size(), 2u);
  EXPECT_EQ(p.input("ioi")->params["n"], 8);
  ASSERT_EQ(p.analyses.size(), 4u);
  EXPECT_EQ(p.analyses[0].id, "sinks");
  EXPECT_EQ(p.analyses[0].models, std::vector<std::string>{"planted"});
  EXPECT_DOUBLE_EQ(p.analyses[0].params["sink_threshold"].get<double>(), 1.0);  // integer accepted as a number
  EXPECT_EQ(p.analysis("ab")->params["heads"], "3.0,3.1,2.1");
  EXPECT_EQ(p.analysis("ab")->params["positions"], "-1");
  EXPECT_EQ(p.analysis("ab")->inputs, std::vector<std::string>{"ioi"});
  EXPECT_EQ(p.analysis("ab")->paramPos.at("heads").line, 26);
}

TEST(BatchPlan, ReportsEveryErrorWithItsLine) {
  const char* bad = R"([models.m]
path = "embedded"
colour = "red"

[inputs.x]
kind = "token-ids"

[[analysis]]
type = "sinkz"
inputs = ["x"]

[[analysis]]
type = "sinks"
inputs = ["x", "nope"]
sink_threshold = "high"

[[analysis]]
type = "patch"
inputs = ["x"]
component = "everything"
)";
  try {
    parsePlan(bad, "bad.toml");
    FAIL() << "no PlanError";
  } catch (const PlanError& e) {
    std::vector<std::pair<int, std::string>> got;
    for (const auto& d : e.diagnostics()) got.emplace_back(d.pos.line, d.message);
    auto has = [&](int line, const std::string& part) {
      for (const auto& [l, m] : got)
        if (l == line && m.find(part) != std::string::npos) return true;
      return false;
    };
    EXPECT_TRUE(has(3, "unknown key 'colour'")) << e.what();
    EXPECT_TRUE(has(5, "needs 'file'")) << e.what();
    EXPECT_TRUE(has(9, "unknown analysis 'sinkz'")) << e.what();
    EXPECT_TRUE(has(12, "unknown input 'nope'")) << e.what();
    EXPECT_TRUE(has(15, "'sink_threshold' must be a number, found a string")) << e.what();
    EXPECT_TRUE(has(17, "cannot run on input 'x' of kind token-ids")) << e.what();
    EXPECT_TRUE(has(20, "must be one of")) << e.what();
    EXPECT_EQ(got.size(), 7u) << e.what();
    EXPECT_NE(std::string(e.what()).find("bad.toml:3:1: unknown key 'colour'"), std::string::npos) << e.what();
    for (size_t i = 1; i < got.size(); ++i) EXPECT_LE(got[i - 1].first, got[i].first);  // source order
  }
}

TEST(BatchPlan, SyntaxErrorHasItsLine) {
  try {
    parsePlan("[models.m]\npath = \"embedded\"\n[[analysis]\ntype = \"sinks\"\n", "syn.toml");
    FAIL();
  } catch (const PlanError& e) {
    ASSERT_EQ(e.diagnostics().size(), 1u);
    EXPECT_EQ(e.diagnostics()[0].pos.line, 3);
  }
}

TEST(BatchPlan, MissingFilesAndFoldersReportedWithLinesTogetherWithOtherErrors) {
  namespace fs = std::filesystem;
  const fs::path dir = test::freshScratchDir("batch_plan_files");
  std::ofstream(dir / "there.json") << "[[1,2]]";
  const char* text = R"([models.m]
path = "no-such-model"
[inputs.a]
kind = "token-ids"
file = "there.json"
[inputs.b]
kind = "token-ids"
file = "missing.json"
[[analysis]]
type = "sinks"
inputs = ["a", "b"]
window = 3
)";
  try {
    loadPlan(text, "files.toml", dir);
    FAIL();
  } catch (const PlanError& e) {
    ASSERT_EQ(e.diagnostics().size(), 3u) << e.what();
    EXPECT_EQ(e.diagnostics()[0].pos.line, 1);  // model folder
    EXPECT_EQ(e.diagnostics()[1].pos.line, 8);  // missing.json
    EXPECT_EQ(e.diagnostics()[2].pos.line, 12);  // window is not a sinks key
  }
  const Plan ok = loadPlan("[models.m]\npath = \"embedded\"\n[inputs.a]\nkind = \"token-ids\"\nfile = \"there.json\"\n"
                           "[[analysis]]\ntype = \"sinks\"\ninputs = \"a\"\n",
                           "ok.toml", dir);
  EXPECT_EQ(ok.input("a")->params["file"], (dir / "there.json").string());
  mechscope::removeTree(dir);
}

TEST(BatchPlan, CrossSectionChecks) {
  auto errors = [](const std::string& text) {
    try {
      parsePlan(text, "x.toml");
    } catch (const PlanError& e) {
      return std::string(e.what());
    }
    return std::string();
  };
  const std::string head = "[models.m]\npath = \"embedded\"\n[inputs.i]\nkind = \"ioi\"\n";
  EXPECT_NE(errors(head + "[[analysis]]\ntype = \"overlap\"\na = \"circuit@i\"\nb = \"circuit@i\"\n").find("must be \"CIRCUIT_ID@INPUT_ID\""),
            std::string::npos);
  // ablate needs --heads or --sweep: the CLI says which when neither is given; the plan checks the types.
  EXPECT_NE(errors(head + "[[analysis]]\ntype = \"ablate\"\ninputs = \"i\"\nsweep = \"yes\"\n").find("true or false"), std::string::npos);
  EXPECT_NE(errors(head + "[[analysis]]\ntype = \"ablate\"\ninputs = \"i\"\nheads = \"3\"\n").find("not LAYER.HEAD"), std::string::npos);
  EXPECT_NE(errors(head + "[[analysis]]\ntype = \"circuit\"\ninputs = \"i\"\n[[analysis]]\ntype = \"circuit\"\ninputs = \"i\"\n")
                .find("used twice"),
            std::string::npos);
  EXPECT_NE(errors("[[analysis]]\ntype = \"sinks\"\n").find("names no model"), std::string::npos);
  EXPECT_EQ(errors(head + "[[analysis]]\ntype = \"circuit\"\ninputs = \"i\"\n"), "");
  // A grid option given by the niah input and again by the retrieval analysis would reach the CLI twice.
  const std::string niah = "[models.m]\npath = \"embedded\"\n[inputs.n]\nkind = \"niah\"\ndepths = 3\n";
  const std::string twice = errors(niah + "[[analysis]]\ntype = \"retrieval\"\ninputs = \"n\"\ndepths = 4\n");
  EXPECT_NE(twice.find("'depths' is also given by input 'n'"), std::string::npos) << twice;
  EXPECT_EQ(errors(niah + "[[analysis]]\ntype = \"retrieval\"\ninputs = \"n\"\nmax_new_tokens = 4\n"), "");
}

}  // namespace
}  // namespace mechscope::batch
