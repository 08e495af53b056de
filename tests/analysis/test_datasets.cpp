// IOI and Colored Objects generators with GPT-2's real tokenizer (role positions, every prompt in a
// length group, answers that are tokens of the prompt), JSONL round trip.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cctype>
#include <fstream>
#include <set>

#include "analysis/common/datasets.hpp"
#include "core/common/errors.hpp"
#include "tests/analysis/causal_test_support.hpp"
#include "tests/common/scratch_root.hpp"

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
    // Without BOS the role positions index the plain encoding; S2 of the corruption is the IO.
    EXPECT_EQ(p.corruptedIds.at(static_cast<size_t>(p.positions.at("S2"))), p.answerId) << p.corrupted;
    EXPECT_EQ(p.positions.at("IO"), ds.prompts[static_cast<size_t>(&p - s2.prompts.data())].positions.at("IO") - 1) << p.clean;
  }
  // Same seed, same dataset.
  EXPECT_EQ(ioiDataset(*tok, o).prompts[7].clean, s2.prompts[7].clean);
}

// Issue #19: the GPT-2 IOI templates have several token lengths; every prompt of every template family
// (BABA and ABBA of the 7 mixed templates) must reach the causal commands, and each carries the token
// positions of its roles.
TEST(Datasets, IoiEveryTemplateFamilyAndPromptIsAnalysed) {
  const auto tok = gpt2Tokenizer();
  if (!tok) GTEST_SKIP() << "fixtures/tokenizers/gpt2 is absent";
  IoiOptions o;
  o.n = 120;
  o.seed = 11;
  CausalDataset ds = ioiDataset(*tok, o);
  tokenizeDataset(ds, &*tok, 50256);
  std::set<int> generated;
  for (const auto& p : ds.prompts) {
    generated.insert(p.templateId);
    const auto tokenOf = [&](const char* role) { return p.cleanIds.at(static_cast<size_t>(p.positions.at(role))); };
    EXPECT_EQ(tokenOf("IO"), p.answerId) << p.clean;
    EXPECT_EQ(tokenOf("S1"), p.incorrectId) << p.clean;
    EXPECT_EQ(tokenOf("S2"), p.incorrectId) << p.clean;
    EXPECT_EQ(p.positions.at("S1+1"), p.positions.at("S1") + 1);
    EXPECT_LT(p.positions.at("S1"), p.positions.at("S2"));
    EXPECT_EQ(p.positions.at("END"), static_cast<int64_t>(p.cleanIds.size()) - 1);
    EXPECT_EQ(p.positions.size(), 5u);
  }
  ASSERT_EQ(generated.size(), 14u) << "the seed must draw every BABA and ABBA template";
  int dropped = -1;
  const std::vector<PatchGroup> groups = toPatchGroups(ds, &dropped);
  EXPECT_EQ(dropped, 0);
  EXPECT_GT(groups.size(), 2u) << "the GPT-2 templates have several token lengths";
  std::set<int> analysed;
  std::vector<int64_t> rows;
  int64_t lastLength = 0;
  for (const auto& g : groups) {
    const int64_t len = g.inputs.clean.size(1);
    EXPECT_GT(len, lastLength);  // one group per length, ascending
    lastLength = len;
    ASSERT_EQ(g.promptIndex.size(), static_cast<size_t>(g.inputs.clean.size(0)));
    for (size_t b = 0; b < g.promptIndex.size(); ++b) {
      const auto& p = ds.prompts.at(static_cast<size_t>(g.promptIndex[b]));
      EXPECT_EQ(static_cast<int64_t>(p.cleanIds.size()), len);
      EXPECT_EQ(g.inputs.clean[static_cast<int64_t>(b)][len - 1].item<int64_t>(), p.cleanIds.back());
      EXPECT_EQ(g.inputs.correct[static_cast<int64_t>(b)].item<int64_t>(), p.answerId);
      EXPECT_EQ(g.templateIds[b], p.templateId);
      analysed.insert(p.templateId);
      rows.push_back(g.promptIndex[b]);
    }
    EXPECT_TRUE(rolePositions(ds, g, "END").eq(len - 1).all().item<bool>());
  }
  std::sort(rows.begin(), rows.end());
  ASSERT_EQ(rows.size(), ds.prompts.size()) << "every prompt is analysed";
  for (size_t i = 0; i < rows.size(); ++i) EXPECT_EQ(rows[i], static_cast<int64_t>(i));
  EXPECT_EQ(analysed, generated) << "every template family survives";
  EXPECT_THROW(rolePositions(ds, groups[0], "ANSWER"), InputError);
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

// Issue #19: answers are the prompt's own colour tokens (lower case, leading space, as Merullo et al.'s
// data), so `intervene --onto incorrect` and `--exclude-answer` find them; the role positions name the
// query's answer colour and its two other colours.
TEST(Datasets, ColoredObjectsAnswersAreTokensOfThePrompt) {
  const auto tok = gpt2Tokenizer();
  if (!tok) GTEST_SKIP() << "fixtures/tokenizers/gpt2 is absent";
  ColoredObjectsOptions o;
  o.n = 60;
  o.seed = 7;
  CausalDataset ds = coloredObjectsDataset(*tok, o);
  tokenizeDataset(ds, &*tok, 50256);
  for (const auto& p : ds.prompts) {
    EXPECT_NE(std::find(p.cleanIds.begin(), p.cleanIds.end(), p.answerId), p.cleanIds.end()) << p.clean << " |" << p.answer;
    EXPECT_NE(std::find(p.cleanIds.begin(), p.cleanIds.end(), p.incorrectId), p.cleanIds.end()) << p.clean << " |" << p.incorrect;
    EXPECT_EQ(p.answer, tok->decode({p.answerId}));
    EXPECT_TRUE(std::islower(static_cast<unsigned char>(p.answer.at(1)))) << p.answer;
    // The solved shot is answered the same way: "\nA: colour\n".
    const size_t shotEnd = p.clean.find("\nQ:");
    ASSERT_NE(shotEnd, std::string::npos);
    EXPECT_TRUE(std::islower(static_cast<unsigned char>(p.clean.at(p.clean.rfind("A: ", shotEnd) + 3)))) << p.clean;
    const auto tokenOf = [&](const char* role) { return p.cleanIds.at(static_cast<size_t>(p.positions.at(role))); };
    EXPECT_EQ(tokenOf("ANSWER"), p.answerId) << p.clean;
    EXPECT_TRUE(tokenOf("INCORRECT1") == p.incorrectId || tokenOf("INCORRECT2") == p.incorrectId) << p.clean;
    EXPECT_NE(tokenOf("INCORRECT1"), p.answerId);
    EXPECT_NE(tokenOf("INCORRECT2"), p.answerId);
    EXPECT_EQ(p.positions.at("END"), static_cast<int64_t>(p.cleanIds.size()) - 1);
    // OBJ1 (the asked object's last token in the query's list, after its colour ANSWER) and OBJ2 (its
    // last token in the question) are the same token; the corrupted prompt asks about another object there.
    EXPECT_EQ(tokenOf("OBJ1"), tokenOf("OBJ2")) << p.clean;
    EXPECT_GT(p.positions.at("OBJ1"), p.positions.at("ANSWER")) << p.clean;
    EXPECT_EQ(p.positions.at("OBJ1+1"), p.positions.at("OBJ1") + 1);
    EXPECT_GT(p.positions.at("OBJ2"), p.positions.at("INCORRECT2"));
    EXPECT_NE(p.corruptedIds.at(static_cast<size_t>(p.positions.at("OBJ2"))), tokenOf("OBJ2")) << p.corrupted;
    // The query's colours come after the shot.
    EXPECT_GT(p.positions.at("ANSWER"), static_cast<int64_t>(tok->encode(p.clean.substr(0, shotEnd)).ids.size()));
  }
}

TEST(Datasets, JsonlRoundTripAndErrors) {
  const auto dir = test::freshScratchDir("causal-jsonl");
  CausalDataset ds;
  for (const auto& p : planted::ioiPrompts(5, 2)) {
    CausalPrompt c;
    c.cleanIds = planted::toIds(p.words);
    c.corruptedIds = planted::toIds(p.corrupted);
    c.answerId = planted::tokenId(p.answer);
    c.incorrectId = planted::tokenId(p.incorrect);
    c.templateId = p.templateId;
    c.positions = {{"END", static_cast<int64_t>(c.cleanIds.size()) - 1}, {"IO", 1}};
    ds.prompts.push_back(c);
  }
  writeJsonl(ds, dir / "planted.jsonl");
  const CausalDataset back = readJsonl(dir / "planted.jsonl");
  ASSERT_EQ(back.prompts.size(), 5u);
  for (size_t i = 0; i < 5; ++i) {
    EXPECT_EQ(back.prompts[i].cleanIds, ds.prompts[i].cleanIds);
    EXPECT_EQ(back.prompts[i].positions, ds.prompts[i].positions);
    EXPECT_EQ(back.prompts[i].answerId, ds.prompts[i].answerId);
    EXPECT_EQ(back.prompts[i].templateId, ds.prompts[i].templateId);
  }
  // Texts with the planted word-level tokenizer.
  std::ofstream(dir / "text.jsonl") << R"({"clean": "When Mary and John were at the store , John gave a ring to", "corrupted": "When Anna and Tom were at the store , Sam gave a ring to", "answer": "Mary", "incorrect": "John"})" << "\n";
  std::ofstream(dir / "bad.jsonl") << "{\"clean\": \"x\"}\n";
  std::ofstream(dir / "broken.jsonl") << "{not json\n";
  std::ofstream(dir / "badpos.jsonl") << R"({"clean_ids": [1, 2], "corrupted_ids": [1, 3], "answer": 4, "incorrect": 5, "positions": {"IO": -1}})" << "\n";
  std::ofstream(dir / "farpos.jsonl") << R"({"clean_ids": [1, 2], "corrupted_ids": [1, 3], "answer": 4, "incorrect": 5, "positions": {"IO": 2}})" << "\n";
  EXPECT_THROW(readJsonl(dir / "badpos.jsonl"), InputError);
  CausalDataset far = readJsonl(dir / "farpos.jsonl");
  EXPECT_THROW(tokenizeDataset(far, nullptr, std::nullopt), InputError);  // position 2 of 2 tokens
  EXPECT_THROW(readJsonl(dir / "bad.jsonl"), InputError);
  EXPECT_THROW(readJsonl(dir / "broken.jsonl"), InputError);
  EXPECT_THROW(readJsonl(dir / "missing.jsonl"), InputError);
  CausalDataset text = readJsonl(dir / "text.jsonl");
  EXPECT_THROW(tokenizeDataset(text, nullptr, std::nullopt), InputError);
}

}  // namespace
}  // namespace mechscope::analysis
