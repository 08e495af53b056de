// Panels derived from analysis plugins (app/gui/plugin_adapter.cpp): the toy analysis of
// tests/examples/toy_analysis (linked into this test program only, through its one registration line)
// gets a form from its table and runs with the right numbers; AttentionInfluence, a built-in plugin,
// equals the independent Python port on a trained model through the GUI's adapter.
#include <gtest/gtest.h>

#include <ATen/ATen.h>

#include <cmath>
#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>

#include "analysis/attribution/direct_logit.hpp"
#include "app/gui/analysis_panel.hpp"
#include "app/gui/jobs.hpp"
#include "tests/app/app_test_support.hpp"
#include "views/line_plot_view.hpp"
#include "views/score_grid_view.hpp"

using namespace mechscope;
using namespace mechscope::gui;

TEST(PluginPanels, ToyAnalysisHasAFormFromItsTableAndItsNumbers) {
  const AnalysisAdapter toy = gui::test::adapterNamed("toy-head-norm");
  EXPECT_TRUE(toy.available);
  ASSERT_EQ(toy.params.size(), 1u);
  EXPECT_EQ(toy.params[0].key, "scale");
  EXPECT_EQ(toy.params[0].defaultValue.toDouble(), 1.0);
  EXPECT_EQ(toy.params[0].minimum, 0.0);
  EXPECT_EQ(toy.params[0].tooltip, "multiply every norm by this factor");

  gui::test::PlantedBench bench;
  auto& [ws, jobs, watch, session] = bench;
  AnalysisPanel panel(toy, &ws, &jobs);
  panel.setParam("scale", 2.0);
  ASSERT_EQ(watch.wait(panel.run()).status, "finished") << panel.statusText().toStdString();
  ASSERT_EQ(panel.gridViews().size(), 1u);
  // Reference: hook_z from a cache run, ‖z‖₂ by hand in fp64, mean over positions, × 2.
  const auto& m = *session->model;
  const std::vector<int64_t>& ids = ws.tokens().ids;
  const ActivationCache cache = m.runWithCache(at::tensor(ids, at::kLong).unsqueeze(0), {"blocks.*.attn.hook_z"});
  for (int l = 0; l < 24; ++l) {
    const at::Tensor z = cache.at("z", l).select(0, 0).to(at::kDouble).contiguous();  // [pos, head, d_head]
    for (int h = 0; h < 4; ++h) {
      double sum = 0;
      for (int64_t p = 0; p < z.size(0); ++p) {
        double sq = 0;
        for (int64_t d = 0; d < z.size(2); ++d) sq += z[p][h][d].item<double>() * z[p][h][d].item<double>();
        sum += std::sqrt(sq);
      }
      const double ref = 2.0 * sum / static_cast<double>(z.size(0));
      EXPECT_NEAR(panel.gridViews()[0]->score(l, h), ref, 1e-9 * std::max(1.0, ref)) << l << "." << h;
    }
  }
  // A value outside the table's range: the form's editor stops at the table's minimum (0: every norm × 0) ...
  panel.setParam("scale", -1.0);
  ASSERT_EQ(watch.wait(panel.run()).status, "finished");
  EXPECT_EQ(panel.gridViews()[0]->score(3, 1), 0.0);
  // ... and a form value that bypasses the editor is refused before any compute, naming the option.
  AnalysisInput in;
  in.session = session;
  in.tokens = ws.tokens();
  QJsonObject form;
  form["scale"] = -1.0;
  try {
    (void)toy.run(in, form, RunContext{});
    ADD_FAILURE() << "scale -1 accepted";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("--scale"), std::string::npos) << e.what();
  }
}

// AttentionInfluence through the GUI's derived adapter equals scripts/reference/attention_influence_ref.py
// (tests/analysis/test_attention_influence.cpp's bound: 3e-4 per token loss).
TEST(PluginPanels, AttentionInfluencePanelEqualsThePythonPort) {
  namespace fs = std::filesystem;
  const fs::path root = fs::path(MECHSCOPE_SOURCE_DIR) / "tests" / "data" / "trained";
  const fs::path dir = root / "gpt2-ioi", refFile = root / "references" / "attention_influence_gpt2-ioi.json";
  if (!fs::exists(dir / "model.safetensors") || !fs::exists(refFile)) GTEST_SKIP() << dir << " is absent";
  std::ifstream f(refFile);
  const nlohmann::json ref = nlohmann::json::parse(f);
  const AnalysisAdapter a = gui::test::adapterNamed("attention-influence");
  ASSERT_TRUE(a.available);
  AnalysisInput in;
  in.session = loadModelSession(dir, LoadOptions{"cpu", "fp32"}, RunContext{});
  QJsonObject form;
  QStringList heads;
  for (const auto& h : ref["heads"]) heads << QString::fromStdString(h.get<std::string>());
  form["heads"] = heads.join(",");
  form["method"] = QString::fromStdString(ref["method"].get<std::string>());
  for (const auto& row : ref["rows"]) {
    in.tokens.ids = row["ids"].get<std::vector<int64_t>>();
    const AnalysisResult r = a.run(in, form, RunContext{});
    const nlohmann::json got = nlohmann::json::parse(r.params["cli_json"].toString().toStdString());
    const auto base = row["token_loss_base"].get<std::vector<double>>(), masked = row["token_loss_masked"].get<std::vector<double>>();
    const auto& g = got["rows"][0];
    ASSERT_EQ(g["token_loss_base"].size(), base.size());
    for (size_t t = 0; t < base.size(); ++t) {
      EXPECT_NEAR(g["token_loss_base"][t].get<double>(), base[t], 3e-4) << t;
      EXPECT_NEAR(g["token_loss_masked"][t].get<double>(), masked[t], 3e-4) << t;
    }
    // The line plot is the per-token increase.
    ASSERT_EQ(r.lines.size(), 1u);
    ASSERT_EQ(r.lines[0].series[0].y.size(), base.size());
    for (size_t t = 0; t < base.size(); ++t) EXPECT_NEAR(r.lines[0].series[0].y[t], masked[t] - base[t], 6e-4) << t;
  }
  // No heads and no --mask-top: the analysis' own message.
  QJsonObject none;
  none["method"] = "uniform";
  EXPECT_THROW((void)a.run(in, none, RunContext{}), InputError);
}

// The Intervene panel (derived from the plugin's table: a dataset field, then heads, onto, onto_ids,
// exclude_answer) reproduces the Python port's Colored Objects intervention on the trained gpt2-co:
// LD within 1e-4·max(1, |ref|) and top-1 accuracy exactly (1.0 → 0.425), as cli.causal_reference.
TEST(PluginPanels, IntervenePanelEqualsThePythonPort) {
  namespace fs = std::filesystem;
  const fs::path root = fs::path(MECHSCOPE_SOURCE_DIR) / "tests" / "data" / "trained";
  const fs::path dir = root / "gpt2-co", refFile = root / "references" / "circuits_co_gpt2-co.json";
  if (!fs::exists(dir / "model.safetensors") || !fs::exists(refFile)) GTEST_SKIP() << dir << " is absent";
  std::ifstream f(refFile);
  const nlohmann::json ref = nlohmann::json::parse(f)["intervention"];
  const AnalysisAdapter a = gui::test::adapterNamed("intervene");
  ASSERT_TRUE(a.available);
  QStringList keys;
  for (const auto& p : a.params) keys << p.key;
  EXPECT_EQ(keys, (QStringList{"dataset", "n", "corruption", "heads", "onto", "onto_ids", "exclude_answer"}));
  Workspace ws;
  JobRunner jobs;
  gui::test::JobWatch watch(jobs);
  ws.setSession(loadModelSession(dir, LoadOptions{"cpu", "fp32"}, RunContext{}));
  AnalysisPanel panel(a, &ws, &jobs);
  QStringList heads;
  for (const auto& h : ref["heads"]) heads << QString::fromStdString(h.get<std::string>());
  panel.setParam("dataset", QString::fromStdString((root / "references" / "co_dataset.jsonl").string()));
  panel.setParam("heads", heads.join(","));
  panel.setParam("onto", "incorrect");
  ASSERT_EQ(watch.wait(panel.run()).status, "finished") << panel.statusText().toStdString();
  const QJsonObject got = ws.results().back().params;
  const auto tol = [](double r) { return 1e-4 * std::max(1.0, std::abs(r)); };
  const double before = ref["before"]["mean_ld"].get<double>(), after = ref["after_incorrect"]["mean_ld"].get<double>();
  EXPECT_NEAR(got["metric_before"].toDouble(), before, tol(before));
  EXPECT_NEAR(got["metric_after"].toDouble(), after, tol(after));
  EXPECT_EQ(got["accuracy_before"].toDouble(), ref["before"]["top1"].get<double>());
  EXPECT_EQ(got["accuracy_after"].toDouble(), ref["after_incorrect"]["top1"].get<double>());
  EXPECT_EQ(got["prompts_without_keys"].toDouble(), 0.0);
}

// A dataset analysis with an empty dataset field runs on the Patching panel's pair: the DLA panel then
// shows directLogitAttribution of the clean prompt (answer − contrast at the last position).
TEST(PluginPanels, DatasetPanelRunsOnThePatchingPairWhenNoDatasetIsGiven) {
  gui::test::PlantedBench bench;
  auto& [ws, jobs, watch, session] = bench;
  AnalysisPanel panel(gui::test::adapterNamed("dla"), &ws, &jobs);
  panel.setParam("dataset", QString());
  EXPECT_EQ(watch.wait(panel.run()).status, "failed");
  EXPECT_TRUE(panel.statusText().contains("Patching panel")) << panel.statusText().toStdString();
  const auto d = plantedPatchingDefaults();
  const int64_t mary = *session->tokenizer->tokenToId("Mary"), john = *session->tokenizer->tokenToId("John");
  const auto clean = tokenizePrompt(*session, d.clean).ids;
  ASSERT_EQ(watch.wait(submitBuildPatching(ws, jobs, clean, tokenizePrompt(*session, d.corrupt).ids, mary, john)).status, "finished");
  ASSERT_EQ(watch.wait(panel.run()).status, "finished") << panel.statusText().toStdString();
  const auto ref = analysis::directLogitAttribution(*session->model, at::tensor(clean, at::kLong).unsqueeze(0),
                                                    at::tensor(std::vector<int64_t>{mary}), at::tensor(std::vector<int64_t>{john}));
  for (int l = 0; l < 24; ++l)
    for (int h = 0; h < 4; ++h) EXPECT_NEAR(panel.gridViews()[0]->score(l, h), ref.heads[l][h].item<double>(), 1e-9) << l << "." << h;
}
