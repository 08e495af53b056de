// Loading the planted model through the job runner, the model card, the token strip, bad folders.
#include <gtest/gtest.h>

#include <QTemporaryDir>

#include <filesystem>
#include <fstream>

#include "app/gui/jobs.hpp"
#include "app/gui/model_panel.hpp"
#include "app/gui/workspace.hpp"
#include "app_test_support.hpp"
#include "core/common/errors.hpp"
#include "views/token_strip_view.hpp"

using namespace mechscope;
using namespace mechscope::gui;
namespace fs = std::filesystem;

TEST(ModelLoading, PlantedModelThroughTheJobRunnerFillsTheCard) {
  Workspace ws;
  JobRunner jobs;
  gui::test::JobWatch watch(jobs);
  std::vector<qint64> progress;
  QObject::connect(&jobs, &JobRunner::progress, [&](int, qint64 d, qint64, const QString&) { progress.push_back(d); });
  const int id = submitOpenModel(ws, jobs, {}, LoadOptions{}, true);
  ASSERT_EQ(watch.wait(id).status, "finished");
  ASSERT_TRUE(ws.session());
  const ModelCard& c = ws.session()->card;
  EXPECT_EQ(c.family, "gpt2");
  EXPECT_EQ(c.layers, 24);
  EXPECT_EQ(c.heads, 4);
  EXPECT_EQ(c.dModel, 320);
  EXPECT_EQ(c.dHead, 80);
  EXPECT_EQ(c.vocab, 62);
  EXPECT_EQ(c.nCtx, 1024);
  EXPECT_TRUE(c.planted);
  EXPECT_EQ(c.parameters, ws.session()->model->parameterCount());
  EXPECT_NEAR(static_cast<double>(c.parameters), 10.3e6, 0.1e6);  // docs/planted-models.md
  EXPECT_TRUE(c.hooks.contains("blocks.23.attn.hook_pattern"));
  EXPECT_TRUE(c.hooks.contains("unembed.hook_logits"));
  EXPECT_EQ(c.device, "cpu");
  EXPECT_EQ(c.dtype, "fp32");
  ASSERT_FALSE(progress.empty());
  EXPECT_EQ(progress.back(), 3);

  ModelPanel panel(&ws);
  EXPECT_TRUE(panel.cardText().contains("24 layers × 4 heads")) << panel.cardText().toStdString();
  EXPECT_TRUE(panel.cardText().contains("10,")) << panel.cardText().toStdString();
}

TEST(ModelLoading, BadFoldersFailWithMessagesThatSayWhatToDo) {
  Workspace ws;
  JobRunner jobs;
  gui::test::JobWatch watch(jobs);
  QTemporaryDir tmp;
  const fs::path root = tmp.path().toStdString();

  auto fails = [&](const QString& folder) {
    const auto end = watch.wait(submitOpenModel(ws, jobs, folder, LoadOptions{}));
    EXPECT_EQ(end.status, "failed") << folder.toStdString();
    EXPECT_FALSE(ws.session());
    return end.message;
  };
  EXPECT_TRUE(fails(tmp.path() + "/missing").contains("does not exist"));
  EXPECT_TRUE(fails(tmp.path()).contains("no config.json"));

  // A broken checkpoint: the planted config with a truncated safetensors file.
  const fs::path src = planted::embeddedModelFolder();
  const fs::path broken = root / "broken";
  fs::create_directories(broken);
  fs::copy_file(src / "config.json", broken / "config.json");
  {
    std::ifstream in(src / "model.safetensors", std::ios::binary);
    std::string head(4096, '\0');
    in.read(head.data(), static_cast<std::streamsize>(head.size()));
    std::ofstream(broken / "model.safetensors", std::ios::binary).write(head.data(), static_cast<std::streamsize>(head.size()));
  }
  const QString msg = fails(QString::fromStdString(broken.string()));
  EXPECT_TRUE(msg.contains("model.safetensors")) << msg.toStdString();

  // Garbage in the header.
  std::ofstream(broken / "model.safetensors", std::ios::binary | std::ios::trunc) << "not a safetensors file at all";
  EXPECT_FALSE(fails(QString::fromStdString(broken.string())).isEmpty());

  // A model without tokenizer.json loads, but prompts say what is missing.
  const fs::path noTok = root / "no-tokenizer";
  fs::create_directories(noTok);
  for (const char* f : {"config.json", "model.safetensors"}) fs::copy_file(src / f, noTok / f);
  const int ok = submitOpenModel(ws, jobs, QString::fromStdString(noTok.string()), LoadOptions{});
  ASSERT_EQ(watch.wait(ok).status, "finished");
  ASSERT_TRUE(ws.session());
  EXPECT_FALSE(ws.session()->tokenizer.has_value());
  try {
    (void)tokenizePrompt(*ws.session(), "Mary");
    ADD_FAILURE() << "expected InputError";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("no tokenizer.json"), std::string::npos) << e.what();
  }
  ModelPanel panel(&ws);
  panel.setPromptText("When Mary");
  EXPECT_TRUE(panel.errorText().contains("no tokenizer.json"));
}

TEST(TokenStrip, ShowsTheTokenizersIdsAndOffsetsLive) {
  Workspace ws;
  ws.setSession(gui::test::plantedSession());
  ModelPanel panel(&ws);
  panel.resize(500, 400);
  const QString text = "When Mary and John were at the store";
  panel.setPromptText(text);
  const PromptTokens& t = ws.tokens();
  // BOS + 8 words, ids straight from the tokenizer.
  ASSERT_EQ(t.ids.size(), 9u);
  EXPECT_EQ(t.ids.front(), *gui::test::plantedSession()->tokenizer->bosId());
  const Encoding enc = gui::test::plantedSession()->tokenizer->encode(text.toStdString(), false);
  for (std::size_t i = 0; i < enc.ids.size(); ++i) EXPECT_EQ(t.ids[i + 1], enc.ids[i]);
  EXPECT_EQ(t.display[1], "When");
  EXPECT_EQ(t.display[2], "Mary");
  EXPECT_EQ(t.offsets[2], std::make_pair(5, 9));  // "Mary" at code points [5, 9)
  views::TokenStripView* strip = panel.tokenStrip();
  EXPECT_EQ(strip->tokenCount(), 9);
  const QString tip = strip->tokenTooltip(2);
  EXPECT_TRUE(tip.contains("Mary")) << tip.toStdString();
  EXPECT_TRUE(tip.contains(QString::number(t.ids[2]))) << tip.toStdString();
  EXPECT_TRUE(tip.contains("5") && tip.contains("9")) << tip.toStdString();
  // Memory estimate: 24 layers × 4 heads × 9² × 4 bytes.
  EXPECT_EQ(panel.estimatedBytes(), 24LL * 4 * 81 * 4);
  EXPECT_TRUE(panel.memoryText().contains("31.1 KB")) << panel.memoryText().toStdString();
  EXPECT_TRUE(panel.memoryText().contains("9 × 9 × 4 B")) << panel.memoryText().toStdString();

  // Typing updates the strip after the debounce, without any call.
  panel.setPromptText("Mary");
  EXPECT_EQ(strip->tokenCount(), 2);
}

TEST(MemoryEstimate, LongInputsAreEstimatedBeforeCaching) {
  ModelCard card;
  card.layers = 32;
  card.heads = 32;
  EXPECT_EQ(patternBytes(card, 8192), 32LL * 32 * 8192 * 8192 * 4);  // 275 GB
  EXPECT_EQ(formatBytes(patternBytes(card, 8192)), "274.9 GB");
  EXPECT_EQ(formatBytes(999), "999 B");
}
