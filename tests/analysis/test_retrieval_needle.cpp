// Needle prompts on real tokenizers (issue #18): sentence ends read from decoded text, so needles
// land at increasing depths just after a '.' for byte-level BPE (gpt2), SentencePiece with byte
// fallback (llama2) and tiktoken-style (llama3, qwen3) tokenizers; the bundled haystack is long,
// distinct prose; the newline stop reads decoded text; bad input is one clear InputError.
#include <gtest/gtest.h>

#include <ATen/ATen.h>

#include <fstream>
#include <iostream>
#include <set>
#include <sstream>

#include <nlohmann/json.hpp>

#include "analysis/common/needle.hpp"
#include "analysis/retrieval/retrieval.hpp"
#include "core/common/errors.hpp"
#include "core/synth/planted_tasks.hpp"
#include "tests/analysis/retrieval_test_support.hpp"
#include "tests/analysis/test_attention_stats_support.hpp"

namespace mechscope::test {
namespace {

const std::filesystem::path kResources = std::filesystem::path(MECHSCOPE_SOURCE_DIR) / "resources/haystack";

std::string slurp(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

/// The fixture tokenizer folder, empty when absent.
std::filesystem::path tokenizerDir(const std::string& name) {
  const auto s = sharedDir();
  if (s.empty()) return {};
  const auto p = s / "fixtures/tokenizers" / name;
  return std::filesystem::exists(p / "tokenizer.json") ? p : std::filesystem::path{};
}

TEST(RetrievalNeedle, NeedlesLandAfterSentenceEndsAtIncreasingDepthsForEveryFamily) {
  const auto needles = analysis::readNeedles(kResources / "needles.jsonl");
  ASSERT_EQ(needles.size(), 3u);
  const std::string hay = slurp(kResources / "devils_dictionary.txt").substr(0, 60000);
  int tested = 0;
  for (const std::string fam : {"gpt2", "llama2", "llama3", "qwen3"}) {
    const auto dir = tokenizerDir(fam);
    if (dir.empty()) continue;
    ++tested;
    const Tokenizer tok = Tokenizer::fromFile(dir);
    const auto haystack = analysis::tokenizeHaystack(tok, hay);
    analysis::NeedleLayout layout;
    for (const auto& needle : needles) {
      const auto needleIds = tok.encode(needle.needle.substr(needle.needle.find_first_not_of(' ')), false).ids;
      int64_t previous = -1;
      for (const int64_t depth : analysis::roundedLinspace(0, 100, 10)) {
        const auto in = analysis::buildNeedleInput(tok, haystack, needle, 3000, static_cast<double>(depth), layout);
        const std::string where = fam + " depth " + std::to_string(depth);
        EXPECT_GT(in.insertedAt, previous) << where;  // strictly increasing across depths
        previous = in.insertedAt;
        const auto bos = static_cast<int64_t>(tok.encode("", true).ids.size());
        if (depth == 0) {
          EXPECT_EQ(in.insertedAt, bos) << where;
        } else if (depth == 100) {
          EXPECT_EQ(in.insertionToken, in.contextTokens) << where;  // appended, as the official code
        } else {
          ASSERT_GT(in.insertedAt, bos) << where;
          // Just after a sentence end: the token before the needle decodes to text ending in '.'.
          const std::string before = tok.decode({in.ids[static_cast<size_t>(in.insertedAt - 1)]});
          EXPECT_TRUE(analysis::endsSentence(before)) << where << ": '" << before << "'";
          // ... and the move back is shorter than one sentence of the haystack (< 300 tokens here).
          EXPECT_LE(in.contextTokens * depth / 100 - in.insertionToken, 300) << where;
        }
        // The needle's words follow.
        const std::string start = tok.decode({in.ids.begin() + in.insertedAt, in.ids.begin() + in.insertedAt + 4});
        EXPECT_EQ(start.substr(start.find_first_not_of(' '), 6), needle.needle.substr(needle.needle.find_first_not_of(' '), 6)) << where;
        // The answer span is found inside the needle (the official find_needle_idx). At depth 100 the
        // question follows the needle with no space (as the official code), and tiktoken-style
        // vocabularies merge "car.Based" into "car", ".B", "ased": a span may then be missing.
        if (!in.span && depth == 100) continue;
        ASSERT_TRUE(in.span.has_value()) << where;
        EXPECT_GE(in.span->first, in.insertedAt - 2) << where;
        EXPECT_LE(in.span->second, in.insertedAt + static_cast<int64_t>(needleIds.size()) + 2) << where;
        // Length: context (3000 − 200) + special tokens + question, give or take the re-encoding.
        std::string q = layout.questionTemplate;
        q.replace(q.find("{question}"), 10, needle.question);
        const auto expected = 3000 - 200 + bos + static_cast<int64_t>(tok.encode(q, false).ids.size());
        EXPECT_NEAR(static_cast<double>(in.ids.size()), static_cast<double>(expected), 8.0) << where;
        EXPECT_FALSE(in.haystackRepeated);
      }
    }
  }
  if (tested == 0) GTEST_SKIP() << "fixture tokenizers absent (set MECHSCOPE_SHARED)";
}

TEST(RetrievalNeedle, SentenceEndsComeFromDecodedText) {
  EXPECT_TRUE(analysis::endsSentence("."));
  EXPECT_TRUE(analysis::endsSentence(" ."));
  EXPECT_TRUE(analysis::endsSentence(".\n\n"));
  EXPECT_TRUE(analysis::endsSentence("...  "));
  EXPECT_FALSE(analysis::endsSentence(".)"));
  EXPECT_FALSE(analysis::endsSentence(" the"));
  EXPECT_FALSE(analysis::endsSentence(""));
  EXPECT_FALSE(analysis::endsSentence(" \n"));
  const auto dir = tokenizerDir("llama2");
  if (dir.empty()) GTEST_SKIP() << "llama2 tokenizer absent";
  // SentencePiece: "." inside prose is its own piece, neither encode(".") nor encode(" .") as a
  // single token (the old guessed ids); the decoded-text rule marks it.
  const Tokenizer tok = Tokenizer::fromFile(dir);
  const auto h = analysis::tokenizeHaystack(tok, "The river ran cold. Birds sang over the hills. The end");
  int ends = 0;
  for (size_t i = 0; i < h.ids.size(); ++i) ends += h.sentenceEnd[i];
  EXPECT_EQ(ends, 2);
  const auto dot = tok.encode(".", false).ids;
  const bool guessedIdsMatch =
      std::any_of(h.ids.begin(), h.ids.end(), [&](int64_t id) { return dot.size() == 1 && id == dot[0]; });
  EXPECT_FALSE(guessedIdsMatch) << "the llama2 fixture no longer shows the old bug this test guards against";
}

TEST(RetrievalNeedle, BundledHaystackIsLongDistinctProse) {
  const std::string hay = slurp(kResources / "devils_dictionary.txt");
  ASSERT_GT(hay.size(), 300000u);
  EXPECT_TRUE(std::filesystem::exists(kResources / "README.md"));
  // Distinct text, not a short text repeated: almost every run of 8 words occurs once.
  std::vector<std::string> words;
  std::istringstream ws(hay);
  for (std::string w; ws >> w;) words.push_back(w);
  std::set<std::vector<std::string>> windows;
  for (size_t i = 0; i + 8 <= words.size(); ++i)
    windows.insert({words.begin() + static_cast<std::ptrdiff_t>(i), words.begin() + static_cast<std::ptrdiff_t>(i + 8)});
  EXPECT_GT(static_cast<double>(windows.size()) / static_cast<double>(words.size() - 7), 0.99);
  int tested = 0;
  for (const std::string fam : {"gpt2", "llama2"}) {
    const auto dir = tokenizerDir(fam);
    if (dir.empty()) continue;
    ++tested;
    const auto h = analysis::tokenizeHaystack(Tokenizer::fromFile(dir), hay);
    EXPECT_GE(h.ids.size(), 65536u) << fam;
    std::cout << fam << ": bundled haystack = " << h.ids.size() << " tokens\n";
    // Sentence ends throughout, so every depth has one close by.
    size_t ends = 0;
    for (const char e : h.sentenceEnd) ends += e != 0;
    EXPECT_GT(ends, h.ids.size() / 60) << fam;
  }
  if (tested == 0) GTEST_SKIP() << "fixture tokenizers absent (set MECHSCOPE_SHARED)";
}

TEST(RetrievalNeedle, StopsOnDecodedNewlineWithLlama2Tokenizer) {
  const auto dir = tokenizerDir("llama2");
  if (dir.empty()) GTEST_SKIP() << "llama2 tokenizer absent";
  const Tokenizer tok = Tokenizer::fromFile(dir);
  // "\n" is no single token here (▁ + <0x0A>), so a stop-token id cannot express it.
  ASSERT_NE(tok.encode("\n", false).ids.size(), 1u);
  const auto id = [&](const char* t) { return tok.tokenToId(t).value(); };
  // What the model "says": ▁Park, ▁, <0x0A>, ▁The ... (the planted model runs; its ids are mapped
  // through this script by decodeText, so the stop rule sees SentencePiece text).
  const std::vector<int64_t> script = {id("\xE2\x96\x81" "Park"), id("\xE2\x96\x81"), id("<0x0A>"), id("\xE2\x96\x81" "The"), id("\xE2\x96\x81" "end")};
  const auto decodeText = [&](const std::vector<int64_t>& ids) {
    return tok.decode({script.begin(), script.begin() + static_cast<std::ptrdiff_t>(std::min(ids.size(), script.size()))}, true);
  };
  const auto& f = attnPlanted();
  const auto np = planted::needlePrompt(60, 0.5, 1);
  analysis::RetrievalTest t = test::plantedRetrievalTest(np);
  analysis::RetrievalDecode d;
  d.maxNewTokens = 5;
  d.stopOnNewline = true;
  const auto r = analysis::runRetrievalTest(*f.model, t, d, decodeText);
  EXPECT_EQ(r.generated.size(), 3u);  // stopped on the step that emitted <0x0A>, which is kept
  EXPECT_EQ(r.stopReason, "newline");
  d.stopOnNewline = false;
  const auto all = analysis::runRetrievalTest(*f.model, t, d, decodeText);
  EXPECT_EQ(all.generated.size(), 5u);
  EXPECT_EQ(all.stopReason, "max_new_tokens");
  d.stopOnNewline = true;
  EXPECT_THROW(analysis::runRetrievalTest(*f.model, t, d), InputError);  // no decoder to read
}

TEST(RetrievalNeedle, MissingAnswerSpanIsNotFoundNotFakedWithTheInsertion) {
  const auto dir = tokenizerDir("gpt2");
  if (dir.empty()) GTEST_SKIP() << "gpt2 tokenizer absent";
  const Tokenizer tok = Tokenizer::fromFile(dir);
  const auto haystack = analysis::tokenizeHaystack(tok, slurp(kResources / "devils_dictionary.txt").substr(0, 20000));
  analysis::Needle n{"The best thing to do in Beijing is to take a walk in Chaoyang Park.", "What is best?",
                     "eat a sandwich and sit in Dolores Park on a sunny day"};
  const auto in = analysis::buildNeedleInput(tok, haystack, n, 1000, 50, {});
  EXPECT_FALSE(in.span.has_value());
  EXPECT_GT(in.insertedAt, 0);
}

TEST(RetrievalNeedle, BadInputIsOneClearInputError) {
  const auto dir = tokenizerDir("gpt2");
  if (dir.empty()) GTEST_SKIP() << "gpt2 tokenizer absent";
  // A byte-level tokenizer without its decoder.
  auto j = nlohmann::json::parse(slurp(dir / "tokenizer.json"));
  j["decoder"] = nullptr;
  const Tokenizer raw = Tokenizer::fromJson(j.dump(), "no-decoder");
  EXPECT_FALSE(raw.decodesText());
  try {
    analysis::tokenizeHaystack(raw, "Some text. More.");
    ADD_FAILURE() << "no InputError";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("no decoder"), std::string::npos) << e.what();
    EXPECT_EQ(std::string(e.what()).find('\n'), std::string::npos);
  }
  // A plain word-level tokenizer (the planted one) decodes by joining words: accepted.
  EXPECT_TRUE(Tokenizer::fromFile(attnPlanted().folder).decodesText());
  // A needle longer than the context.
  const Tokenizer tok = Tokenizer::fromFile(dir);
  const auto haystack = analysis::tokenizeHaystack(tok, "The river ran cold. Birds sang over the hills. ");
  const auto needles = analysis::readNeedles(kResources / "needles.jsonl");
  analysis::NeedleLayout layout;
  layout.buffer = 20;
  try {
    analysis::buildNeedleInput(tok, haystack, needles[0], 40, 50, layout);
    ADD_FAILURE() << "no InputError";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("longer than context length 40"), std::string::npos) << e.what();
  }
  // A short haystack wraps around, and says so.
  const auto wrapped = analysis::buildNeedleInput(tok, haystack, needles[1], 400, 50, layout);
  EXPECT_TRUE(wrapped.haystackRepeated);
}

}  // namespace
}  // namespace mechscope::test
