// Behaviour on the real fixtures beyond the reference file: ids, display labels, spans, BOS/EOS, threads.
#include <thread>

#include <gtest/gtest.h>

#include "core/tokenizer/tokenizer.hpp"
#include "core/tokenizer/unicode_utils.hpp"
#include "tests/tokenizer/shared_dir.hpp"

namespace mechscope {
namespace {

Tokenizer load(const char* name) { return Tokenizer::fromFile(*test::tokenizerFixtures() / name); }

#define REQUIRE_FIXTURES() \
  if (!test::tokenizerFixtures()) GTEST_SKIP() << "shared/fixtures/tokenizers not found (set MECHSCOPE_SHARED)"

TEST(RealTokenizers, VocabSizesAndSpecialIds) {
  REQUIRE_FIXTURES();
  const auto gpt2 = load("gpt2"), llama2 = load("llama2"), llama3 = load("llama3"), qwen3 = load("qwen3");
  EXPECT_EQ(gpt2.vocabSize(), 50257);
  EXPECT_EQ(llama2.vocabSize(), 32000);
  EXPECT_EQ(llama3.vocabSize(), 128256);
  EXPECT_EQ(qwen3.vocabSize(), 151669);
  EXPECT_EQ(gpt2.bosId(), 50256);
  EXPECT_EQ(gpt2.eosId(), 50256);
  EXPECT_EQ(llama2.bosId(), 1);
  EXPECT_EQ(llama2.eosId(), 2);
  EXPECT_EQ(llama3.bosId(), 128000);
  EXPECT_EQ(llama3.eosId(), 128001);
  EXPECT_FALSE(qwen3.bosId().has_value());
  EXPECT_EQ(qwen3.eosId(), 151645);
  EXPECT_EQ(qwen3.tokenToId("<|im_start|>"), 151644);
  EXPECT_EQ(gpt2.tokenToId("\xC4\xA0the"), 262);  // "Ġthe"
  EXPECT_EQ(gpt2.idToToken(262), "\xC4\xA0the");
  for (const auto* t : {&gpt2, &llama2, &llama3, &qwen3}) EXPECT_TRUE(t->unsupportedComponents().empty());
}

TEST(RealTokenizers, DisplayTokensAreReadableAndValidUtf8) {
  REQUIRE_FIXTURES();
  const auto gpt2 = load("gpt2"), llama2 = load("llama2");
  EXPECT_EQ(gpt2.displayToken(262), "\xE2\x90\xA3the");  // ␣the
  EXPECT_EQ(gpt2.displayToken(198), "\xE2\x86\xB5");     // ↵
  EXPECT_EQ(llama2.displayToken(13), "\xE2\x86\xB5");    // <0x0A> → ↵
  EXPECT_EQ(llama2.displayToken(28705), "\xE2\x90\xA3");  // ▁ → ␣
  // Partial UTF-8 byte tokens of GPT-2 ("ðŁ" = F0 9F) are escaped, never raw bytes.
  const auto e = gpt2.encode("\xF0\x9F\xA4\x97");  // 🤗
  std::string all;
  for (const auto id : e.ids) {
    const auto d = gpt2.displayToken(id);
    EXPECT_TRUE(tok::isValidUtf8(d)) << id;
    all += d;
  }
  EXPECT_NE(all.find("\\xF0"), std::string::npos) << all;
  for (int64_t id = 0; id < gpt2.vocabSize(); id += 7) ASSERT_TRUE(tok::isValidUtf8(gpt2.displayToken(id))) << id;
}

TEST(RealTokenizers, CharSpansMapToTokenPositions) {
  REQUIRE_FIXTURES();
  const auto gpt2 = load("gpt2");
  const std::string text = "When Mary and John went to the store, John gave a drink to";
  const auto e = gpt2.encode(text);
  // "John" first occurs at code points [14, 18); its token is " John" = [13, 18).
  const auto idx = tokensInCharSpan(e, 14, 18);
  ASSERT_EQ(idx.size(), 1u);
  EXPECT_EQ(gpt2.idToToken(e.ids[idx[0]]), "\xC4\xA0John");
  EXPECT_EQ(e.offsets[idx[0]], (std::pair<size_t, size_t>{13, 18}));
  EXPECT_EQ(tokensInCharSpan(e, 0, text.size()).size(), e.ids.size());
  // Multi-byte characters: offsets are code points, not bytes.
  const auto u = load("qwen3").encode("na\xC3\xAFve caf\xC3\xA9");  // naïve café
  EXPECT_EQ(u.offsets.back().second, 10u);
}

TEST(RealTokenizers, DecodeSkipsSpecialTokensOnRequest) {
  REQUIRE_FIXTURES();
  const auto qwen3 = load("qwen3");
  const auto e = qwen3.encode("<|im_start|>user\nHi<|im_end|>");
  EXPECT_EQ(e.ids.front(), 151644);
  EXPECT_EQ(qwen3.decode(e.ids), "<|im_start|>user\nHi<|im_end|>");
  EXPECT_EQ(qwen3.decode(e.ids, true), "user\nHi");
  const auto llama3 = load("llama3");
  EXPECT_EQ(llama3.decode(llama3.encode("Hello world", true).ids, true), "Hello world");
}

TEST(RealTokenizers, ConcurrentEncodesAgree) {
  REQUIRE_FIXTURES();
  const auto llama3 = load("llama3");
  std::string text;
  for (int i = 0; i < 200; ++i) text += "The quick brown fox " + std::to_string(i * 7919) + " jumps; ";
  const auto expected = llama3.encode(text).ids;
  std::vector<std::vector<int64_t>> got(4);
  std::vector<std::thread> threads;
  for (size_t t = 0; t < got.size(); ++t) threads.emplace_back([&, t] { got[t] = llama3.encode(text).ids; });
  for (auto& th : threads) th.join();
  for (const auto& g : got) EXPECT_EQ(g, expected);
}

}  // namespace
}  // namespace mechscope
