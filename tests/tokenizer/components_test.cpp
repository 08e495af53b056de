// Component behaviour against the semantics of Hugging Face `tokenizers` (cases from its own test suite).
#include <gtest/gtest.h>

#include "core/common/errors.hpp"
#include "core/tokenizer/tokenizer.hpp"
#include "tests/tokenizer/tiny_tokenizers.hpp"

namespace mechscope {
namespace {

using Offsets = std::vector<std::pair<size_t, size_t>>;

Tokenizer make(const nlohmann::json& j) { return Tokenizer::fromJson(j.dump(), "test.json"); }

std::vector<std::string> tokensOf(const Tokenizer& t, const std::string& text) { return t.encode(text).tokens; }

// Split on '-' with each behaviour: "the-final--countdown" (the example of tokenizers' docs).
class SplitBehaviour : public ::testing::TestWithParam<std::pair<std::string, std::vector<std::string>>> {};

TEST_P(SplitBehaviour, CutsLikeTokenizers) {
  auto j = test::tinyBpe({"the", "final", "countdown", "-", "--", "the-", "final-", "-final", "-countdown"});
  j["pre_tokenizer"] = {{"type", "Split"}, {"pattern", {{"String", "-"}}}, {"behavior", GetParam().first}, {"invert", false}};
  EXPECT_EQ(tokensOf(make(j), "the-final--countdown"), GetParam().second);
}

INSTANTIATE_TEST_SUITE_P(
    Behaviours, SplitBehaviour,
    ::testing::Values(std::pair<std::string, std::vector<std::string>>{"Removed", {"the", "final", "countdown"}},
                      std::pair<std::string, std::vector<std::string>>{"Isolated", {"the", "-", "final", "-", "-", "countdown"}},
                      std::pair<std::string, std::vector<std::string>>{"MergedWithPrevious", {"the-", "final-", "-", "countdown"}},
                      std::pair<std::string, std::vector<std::string>>{"MergedWithNext", {"the", "-final", "-", "-countdown"}},
                      std::pair<std::string, std::vector<std::string>>{"Contiguous", {"the", "-", "final", "--", "countdown"}}));

TEST(SplitRegex, InvertKeepsTheMatchesAsWords) {
  auto j = test::tinyBpe({"Hello", "world", " ", ",", "!", ", "});
  j["pre_tokenizer"] = {{"type", "Split"}, {"pattern", {{"Regex", "\\w+"}}}, {"behavior", "Removed"}, {"invert", true}};
  const auto e = make(j).encode("Hello, world!");
  EXPECT_EQ(e.tokens, (std::vector<std::string>{"Hello", "world"}));
  EXPECT_EQ(e.offsets, (Offsets{{0, 5}, {7, 12}}));
}

// tokenizers' added_vocabulary options_use_cases: Lowercase normalizer, "my" lstrip+rstrip, "ony" single_word.
TEST(AddedTokens, HonourLstripRstripSingleWordAndNormalized) {
  auto j = test::tinyBpe(test::asciiChars());
  j["normalizer"] = {{"type", "Lowercase"}};
  j["added_tokens"] = {
      {{"id", 200}, {"content", "my"}, {"single_word", false}, {"lstrip", true}, {"rstrip", true}, {"normalized", true}, {"special", false}},
      {{"id", 201}, {"content", "name"}, {"single_word", false}, {"lstrip", false}, {"rstrip", false}, {"normalized", true}, {"special", false}},
      {{"id", 202}, {"content", "ony"}, {"single_word", true}, {"lstrip", false}, {"rstrip", false}, {"normalized", true}, {"special", false}},
      {{"id", 203}, {"content", "[CLS]"}, {"single_word", false}, {"lstrip", false}, {"rstrip", false}, {"normalized", false}, {"special", true}},
      {{"id", 204}, {"content", "[SEP]"}, {"single_word", false}, {"lstrip", false}, {"rstrip", false}, {"normalized", false}, {"special", true}}};
  const auto tok = make(j);
  const auto e = tok.encode("[CLS] My name is Anthony [SEP]");
  ASSERT_EQ(e.ids.size(), 3u + 12u + 1u);
  EXPECT_EQ(e.ids[0], 203);
  EXPECT_EQ(e.offsets[0], (std::pair<size_t, size_t>{0, 5}));
  EXPECT_EQ(e.ids[1], 200);  // " my " with both spaces (lstrip + rstrip), matched after lowercasing
  EXPECT_EQ(e.tokens[1], " my ");
  EXPECT_EQ(e.offsets[1], (std::pair<size_t, size_t>{5, 9}));
  EXPECT_EQ(e.ids[2], 201);
  EXPECT_EQ(e.offsets[2], (std::pair<size_t, size_t>{9, 13}));
  EXPECT_EQ(e.tokens[3], " ");  // "ony" inside "anthony" is not a single word
  EXPECT_EQ(e.ids.back(), 204);
  EXPECT_EQ(e.offsets.back(), (std::pair<size_t, size_t>{25, 30}));
  // No decoder: token strings joined by spaces (added tokens by their content), specials skipped.
  EXPECT_EQ(tok.decode(e.ids, true), "my name   i s   a n t h o n y  ");
  EXPECT_EQ(tok.decode({203, 201}, false), "[CLS] name");
}

TEST(AddedTokens, SingleWordOnlyMatchesWholeWords) {
  auto j = test::tinyBpe(test::asciiChars());
  j["added_tokens"] = {{{"id", 300}, {"content", "<mask>"}, {"single_word", true}, {"lstrip", false}, {"rstrip", false},
                        {"normalized", false}, {"special", false}}};
  const auto e = make(j).encode("<mask> My name <mask> A<mask> <mask>ony <mask>");
  std::vector<size_t> maskAt;
  for (size_t i = 0; i < e.ids.size(); ++i)
    if (e.ids[i] == 300) maskAt.push_back(e.offsets[i].first);
  EXPECT_EQ(maskAt, (std::vector<size_t>{0, 15, 40}));
}

TEST(Bpe, MergesByRankInBothFormats) {
  for (const bool pairs : {false, true}) {
    const nlohmann::json merges =
        pairs ? nlohmann::json::array({nlohmann::json::array({"l", "o"}), nlohmann::json::array({"lo", "w"}),
                                       nlohmann::json::array({"e", "r"})})
              : nlohmann::json::array({"l o", "lo w", "e r"});
    auto j = test::tinyBpe({"l", "o", "w", "e", "r", "lo", "low", "er"}, merges, false);
    const auto e = make(j).encode("lower");
    EXPECT_EQ(e.tokens, (std::vector<std::string>{"low", "er"})) << (pairs ? "pairs" : "strings");
    EXPECT_EQ(e.ids, (std::vector<int64_t>{6, 7}));
    EXPECT_EQ(e.offsets, (Offsets{{0, 3}, {3, 5}}));
  }
}

TEST(Bpe, IgnoreMergesTakesWholeWordFromVocab) {
  // "ab" is in the vocab but no merge builds it: ignore_merges picks it directly, otherwise a + b.
  auto j = test::tinyBpe({"a", "b", "ab"}, nlohmann::json::array(), true);
  EXPECT_EQ(make(j).encode("ab").ids, (std::vector<int64_t>{2}));
  j["model"]["ignore_merges"] = false;
  EXPECT_EQ(make(j).encode("ab").ids, (std::vector<int64_t>{0, 1}));
}

TEST(Bpe, ByteFallbackAndUnknownTokens) {
  std::vector<std::string> vocab{"<unk>", "a"};
  for (int b = 0; b < 256; ++b) {
    char buf[8];
    std::snprintf(buf, sizeof buf, "<0x%02X>", b);
    vocab.emplace_back(buf);
  }
  auto j = test::tinyBpe(vocab);
  j["model"]["byte_fallback"] = true;
  j["model"]["unk_token"] = "<unk>";
  j["decoder"] = {{"type", "Sequence"}, {"decoders", {{{"type", "ByteFallback"}}, {{"type", "Fuse"}}}}};
  const auto tok = make(j);
  const auto e = tok.encode("a\xC3\xA9");  // "aé"
  EXPECT_EQ(e.tokens, (std::vector<std::string>{"a", "<0xC3>", "<0xA9>"}));
  EXPECT_EQ(e.ids, (std::vector<int64_t>{1, 2 + 0xC3, 2 + 0xA9}));
  EXPECT_EQ(e.offsets, (Offsets{{0, 1}, {1, 2}, {1, 2}}));
  EXPECT_EQ(tok.decode(e.ids), "a\xC3\xA9");
  EXPECT_EQ(tok.decode({2 + 0xC3, 1}), "\xEF\xBF\xBD" "a");  // a lone lead byte decodes to U+FFFD

  j["model"]["byte_fallback"] = false;
  j["model"]["fuse_unk"] = true;
  const auto e2 = make(j).encode("a\xC3\xA9\xC3\xA9" "a");  // unknown chars fuse into one <unk>
  EXPECT_EQ(e2.ids, (std::vector<int64_t>{1, 0, 1}));
  EXPECT_EQ(e2.offsets, (Offsets{{0, 1}, {1, 3}, {3, 4}}));
}

TEST(Metaspace, PrependSchemesAndDecoding) {
  auto j = test::tinyBpe({"\xE2\x96\x81hello", "\xE2\x96\x81world", "hello", "\xE2\x96\x81"});
  j["pre_tokenizer"] = {{"type", "Metaspace"}, {"replacement", "\xE2\x96\x81"}, {"prepend_scheme", "always"}, {"split", true}};
  j["decoder"] = {{"type", "Metaspace"}, {"replacement", "\xE2\x96\x81"}, {"prepend_scheme", "always"}, {"split", true}};
  const auto tok = make(j);
  const auto e = tok.encode("hello world");
  EXPECT_EQ(e.ids, (std::vector<int64_t>{0, 1}));
  EXPECT_EQ(e.offsets, (Offsets{{0, 5}, {5, 11}}));
  EXPECT_EQ(tok.decode(e.ids), "hello world");
  j["pre_tokenizer"]["prepend_scheme"] = "never";
  EXPECT_EQ(make(j).encode("hello world").ids, (std::vector<int64_t>{2, 1}));
}

TEST(Normalizers, PrependReplaceKeepOffsetsOnTheOriginal) {
  // Llama-2 style: Prepend "▁" then Replace " " → "▁", no pre-tokenizer.
  auto j = test::tinyBpe({"\xE2\x96\x81", "a", "\xE2\x96\x81" "a", "b"});
  j["normalizer"] = {{"type", "Sequence"},
                     {"normalizers", {{{"type", "Prepend"}, {"prepend", "\xE2\x96\x81"}},
                                      {{"type", "Replace"}, {"pattern", {{"String", " "}}}, {"content", "\xE2\x96\x81"}}}}};
  j["model"]["ignore_merges"] = false;
  j["model"]["merges"] = nlohmann::json::array({"\xE2\x96\x81 a"});
  const auto e = make(j).encode("a b");
  EXPECT_EQ(e.ids, (std::vector<int64_t>{2, 0, 3}));
  EXPECT_EQ(e.offsets, (Offsets{{0, 1}, {1, 2}, {2, 3}}));
}

TEST(Normalizers, StripAndLowercase) {
  auto j = test::tinyBpe(test::asciiChars());
  j["normalizer"] = {{"type", "Sequence"}, {"normalizers", {{{"type", "Strip"}, {"strip_left", true}, {"strip_right", true}},
                                                             {{"type", "Lowercase"}}}}};
  const auto e = make(j).encode("  AB ");
  EXPECT_EQ(e.tokens, (std::vector<std::string>{"a", "b"}));
  EXPECT_EQ(e.offsets, (Offsets{{2, 3}, {3, 4}}));
}

TEST(Digits, IndividualAndContiguous) {
  auto j = test::tinyBpe({"a", "1", "2", "3", "12", "123"});
  j["pre_tokenizer"] = {{"type", "Digits"}, {"individual_digits", true}};
  EXPECT_EQ(tokensOf(make(j), "a123"), (std::vector<std::string>{"a", "1", "2", "3"}));
  j["pre_tokenizer"]["individual_digits"] = false;
  EXPECT_EQ(tokensOf(make(j), "a123"), (std::vector<std::string>{"a", "123"}));
}

TEST(Whitespace, SplitsWordsAndPunctuation) {
  auto j = test::tinyBpe({"Hey", "friend", "!", "How", "are", "you", "?!"});
  j["pre_tokenizer"] = {{"type", "Whitespace"}};
  const auto e = make(j).encode("Hey friend!     How are you?!?");
  // "?!?" is one piece; not in the vocab, so BPE keeps only its known character "!".
  EXPECT_EQ(e.tokens, (std::vector<std::string>{"Hey", "friend", "!", "How", "are", "you", "!"}));
  EXPECT_EQ(e.offsets[3], (std::pair<size_t, size_t>{16, 19}));
}

TEST(TemplateProcessing, AddsBosAndEos) {
  auto j = test::tinyBpe({"<s>", "</s>", "a"});
  j["added_tokens"] = {{{"id", 0}, {"content", "<s>"}, {"special", true}, {"normalized", false}},
                       {{"id", 1}, {"content", "</s>"}, {"special", true}, {"normalized", false}}};
  j["post_processor"] = {{"type", "TemplateProcessing"},
                         {"single", {{{"SpecialToken", {{"id", "<s>"}, {"type_id", 0}}}}, {{"Sequence", {{"id", "A"}, {"type_id", 0}}}},
                                     {{"SpecialToken", {{"id", "</s>"}, {"type_id", 0}}}}}},
                         {"pair", nlohmann::json::array()},
                         {"special_tokens", {{"<s>", {{"id", "<s>"}, {"ids", {0}}, {"tokens", {"<s>"}}}},
                                             {"</s>", {{"id", "</s>"}, {"ids", {1}}, {"tokens", {"</s>"}}}}}}};
  const auto tok = make(j);
  const auto e = tok.encode("aa", true);
  EXPECT_EQ(e.ids, (std::vector<int64_t>{0, 2, 2, 1}));
  EXPECT_EQ(e.offsets, (Offsets{{0, 0}, {0, 1}, {1, 2}, {0, 0}}));
  EXPECT_EQ(tok.encode("aa", false).ids, (std::vector<int64_t>{2, 2}));
  EXPECT_EQ(tok.bosId(), 0);
  EXPECT_EQ(tok.eosId(), 1);
  EXPECT_EQ(tokensInCharSpan(e, 1, 2), (std::vector<size_t>{2}));
}

TEST(Decoders, StripReplaceByteLevel) {
  auto j = test::tinyBpe({"\xE2\x96\x81" "a", "b"});
  j["decoder"] = {{"type", "Sequence"},
                  {"decoders", {{{"type", "Replace"}, {"pattern", {{"String", "\xE2\x96\x81"}}}, {"content", " "}},
                                {{"type", "Fuse"}},
                                {{"type", "Strip"}, {"content", " "}, {"start", 1}, {"stop", 0}}}}};
  EXPECT_EQ(make(j).decode({0, 1, 0}), "ab a");
}

}  // namespace
}  // namespace mechscope
