// IOI and Colored Objects generators with GPT-2's real tokenizer, JSONL round trip.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <fstream>

#include "analysis/common/datasets.hpp"
#include "core/common/errors.hpp"
#include "tests/analysis/causal_test_support.hpp"

namespace mechscope::analysis {
namespace {

std::optional<Tokenizer> gpt2Tokenizer() {
  const auto dir = test::causalSharedDir() / "fixtures" / "tokenizers" / "gpt2";
  if (test::causalSharedDir().empty() || !std::filesystem::exists(dir / "tokenizer.json")) return std::nullopt;
  return Tokenizer::fromFile(dir / "tokenizer.json");
}

TEST(Datasets, IoiWithGpt2Tokenizer) {
  const auto tok = gpt2Tokenizer();
  if (!tok) GTEST_SKIP() << "fixtures/tokenizers/gpt2 is absent";
  IoiOptions o;
  o.n = 40;
  o.seed = 3;
  CausalDataset ds = ioiDataset(*tok, o);
  ASSERT_EQ(ds.prompts.size(), 40u);
  tokenizeDataset(ds, &*tok, 50256);
  std::set<int> templates;
  for (const auto& p : ds.prompts) {
    EXPECT_EQ(p.cleanIds.size(), p.corruptedIds.size()) << p.clean;
    EXPECT_EQ(p.cleanIds.front(), 50256);
    EXPECT_NE(p.answerId, p.incorrectId);
    // The subject occurs twice in the clean prompt and the IO once; p_ABC contains neither.
    EXPECT_EQ(std::count(p.cleanIds.begin(), p.cleanIds.end(), p.incorrectId), 2) << p.clean;
    EXPECT_EQ(std::count(p.cleanIds.begin(), p.cleanIds.end(), p.answerId), 1) << p.clean;
    EXPECT_EQ(std::count(p.corruptedIds.begin(), p.corruptedIds.end(), p.incorrectId), 0) << p.corrupted;
    EXPECT_EQ(p.clean.substr(p.clean.size() - 3), " to") << p.clean;
    templates.insert(p.templateId);
    EXPECT_LT(p.templateId, 14);  // mixed: BABA[:7] + ABBA[:7]
  }
  EXPECT_GT(templates.size(), 5u);
  EXPECT_EQ(ioiTemplates().size(), 15u);
  // S2 → IO: IO occurs twice, S once.
  o.corruption = IoiCorruption::S2Io;
  CausalDataset s2 = ioiDataset(*tok, o);
  tokenizeDataset(s2, &*tok, std::nullopt);
  for (const auto& p : s2.prompts) {
    EXPECT_EQ(std::count(p.corruptedIds.begin(), p.corruptedIds.end(), p.answerId), 2);
    EXPECT_EQ(std::count(p.corruptedIds.begin(), p.corruptedIds.end(), p.incorrectId), 1);
  }
  // Same seed, same dataset.
  EXPECT_EQ(ioiDataset(*tok, o).prompts[7].clean, s2.prompts[7].clean);
  int dropped = -1;
  const PatchInputs in = toPatchInputs(ds, &dropped);
  EXPECT_EQ(in.clean.size(0) + dropped, 40);
  EXPECT_GT(in.clean.size(0), 0);
}

TEST(Datasets, ColoredObjectsMindiff) {
  const auto tok = gpt2Tokenizer();
  if (!tok) GTEST_SKIP() << "fixtures/tokenizers/gpt2 is absent";
  ColoredObjectsOptions o;
  o.n = 20;
  o.seed = 42;
  CausalDataset ds = coloredObjectsDataset(*tok, o);
  tokenizeDataset(ds, &*tok, std::nullopt);
  for (const auto& p : ds.prompts) {
    EXPECT_NE(p.clean, p.corrupted);
    EXPECT_EQ(p.cleanIds.size(), p.corruptedIds.size());
    // The prompts differ in exactly one token: the query object.
    int diff = 0;
    for (size_t i = 0; i < p.cleanIds.size(); ++i) diff += p.cleanIds[i] != p.corruptedIds[i];
    EXPECT_EQ(diff, 1) << p.clean;
    EXPECT_EQ(p.clean.substr(p.clean.size() - 3), "\nA:");
    EXPECT_EQ(std::count(p.clean.begin(), p.clean.end(), '\n'), 3);  // shot Q/A lines + query Q line
    EXPECT_NE(p.answer, p.incorrect);
  }
  EXPECT_TRUE(ds.droppedWords.empty());  // all 8 colours are single GPT-2 tokens
}

TEST(Datasets, JsonlRoundTripAndErrors) {
  const auto dir = std::filesystem::temp_directory_path() / "mechscope-causal-jsonl";
  std::filesystem::create_directories(dir);
  CausalDataset ds;
  for (const auto& p : planted::ioiPrompts(5, 2)) {
    CausalPrompt c;
    c.cleanIds = planted::toIds(p.words);
    c.corruptedIds = planted::toIds(p.corrupted);
    c.answerId = planted::tokenId(p.answer);
    c.incorrectId = planted::tokenId(p.incorrect);
    c.templateId = p.templateId;
    ds.prompts.push_back(c);
  }
  writeJsonl(ds, dir / "planted.jsonl");
  const CausalDataset back = readJsonl(dir / "planted.jsonl");
  ASSERT_EQ(back.prompts.size(), 5u);
  for (size_t i = 0; i < 5; ++i) {
    EXPECT_EQ(back.prompts[i].cleanIds, ds.prompts[i].cleanIds);
    EXPECT_EQ(back.prompts[i].answerId, ds.prompts[i].answerId);
    EXPECT_EQ(back.prompts[i].templateId, ds.prompts[i].templateId);
  }
  // Texts with the planted word-level tokenizer.
  std::ofstream(dir / "text.jsonl") << R"({"clean": "When Mary and John were at the store , John gave a ring to", "corrupted": "When Anna and Tom were at the store , Sam gave a ring to", "answer": "Mary", "incorrect": "John"})" << "\n";
  std::ofstream(dir / "bad.jsonl") << "{\"clean\": \"x\"}\n";
  std::ofstream(dir / "broken.jsonl") << "{not json\n";
  EXPECT_THROW(readJsonl(dir / "bad.jsonl"), InputError);
  EXPECT_THROW(readJsonl(dir / "broken.jsonl"), InputError);
  EXPECT_THROW(readJsonl(dir / "missing.jsonl"), InputError);
  CausalDataset text = readJsonl(dir / "text.jsonl");
  EXPECT_THROW(tokenizeDataset(text, nullptr, std::nullopt), InputError);
}

}  // namespace
}  // namespace mechscope::analysis
