// Malformed tokenizer.json files give one-line InputErrors that name the file and the component.
#include <gtest/gtest.h>

#include "core/common/errors.hpp"
#include "core/tokenizer/tokenizer.hpp"
#include "tests/tokenizer/tiny_tokenizers.hpp"

namespace mechscope {
namespace {

// The message of the InputError thrown by loading `text` ("" when nothing is thrown).
std::string loadError(const std::string& text) {
  try {
    Tokenizer::fromJson(text, "bad.json");
  } catch (const InputError& e) {
    return e.what();
  }
  return "";
}

void expectMentions(const std::string& msg, std::initializer_list<const char*> parts) {
  ASSERT_FALSE(msg.empty()) << "no error thrown";
  EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
  for (const char* p : parts) EXPECT_NE(msg.find(p), std::string::npos) << "'" << p << "' missing from: " << msg;
}

TEST(TokenizerErrors, BadJson) { expectMentions(loadError("{\"model\": "), {"bad.json", "not valid JSON"}); }

TEST(TokenizerErrors, NotAnObjectOrNoModel) {
  expectMentions(loadError("[1, 2]"), {"bad.json", "object"});
  expectMentions(loadError("{}"), {"bad.json", "model"});
}

TEST(TokenizerErrors, UnknownModelType) {
  auto j = test::tinyBpe({"a"});
  j["model"]["type"] = "WordPiece";
  expectMentions(loadError(j.dump()), {"bad.json", "model", "WordPiece", "unsupported"});
}

TEST(TokenizerErrors, UnknownComponentTypesAreNamedNotSkipped) {
  for (const auto& [key, what] : std::vector<std::pair<std::string, std::string>>{
           {"normalizer", "normalizer"}, {"pre_tokenizer", "pre-tokenizer"}, {"post_processor", "post-processor"}, {"decoder", "decoder"}}) {
    auto j = test::tinyBpe({"a"});
    j[key] = {{"type", "Frobnicate"}};
    expectMentions(loadError(j.dump()), {"bad.json", key.c_str(), what.c_str(), "Frobnicate"});
  }
}

TEST(TokenizerErrors, NestedComponentPathIsReported) {
  auto j = test::tinyBpe({"a"});
  j["normalizer"] = {{"type", "Sequence"}, {"normalizers", {{{"type", "NFC"}}, {{"type", "Precompiled"}}}}};
  expectMentions(loadError(j.dump()), {"normalizer.normalizers[1]", "Precompiled"});
}

TEST(TokenizerErrors, MergesNamingUnknownTokens) {
  auto j = test::tinyBpe({"a", "b", "ab"}, nlohmann::json::array({"a b", "a zz"}), false);
  expectMentions(loadError(j.dump()), {"bad.json", "model", "merges[1]", "'zz'", "vocabulary"});
  auto k = test::tinyBpe({"a", "b"}, nlohmann::json::array({nlohmann::json::array({"a", "b"})}), false);
  expectMentions(loadError(k.dump()), {"merges[0]", "'ab'", "vocabulary"});
  auto m = test::tinyBpe({"a", "b", "ab"}, nlohmann::json::array({"a  b"}), false);
  expectMentions(loadError(m.dump()), {"merges[0]"});
}

TEST(TokenizerErrors, BadRegexAndBadValues) {
  auto j = test::tinyBpe({"a"});
  j["pre_tokenizer"] = {{"type", "Split"}, {"pattern", {{"Regex", "(unclosed"}}}, {"behavior", "Isolated"}, {"invert", false}};
  expectMentions(loadError(j.dump()), {"pre_tokenizer", "Split", "(unclosed", "does not compile"});
  j["pre_tokenizer"] = {{"type", "Split"}, {"pattern", {{"String", "x"}}}, {"behavior", "Sideways"}, {"invert", false}};
  expectMentions(loadError(j.dump()), {"pre_tokenizer", "Sideways"});
  auto k = test::tinyBpe({"a"});
  k["model"]["vocab"]["b"] = "one";
  expectMentions(loadError(k.dump()), {"model", "'b'"});
  auto u = test::tinyBpe({"a"});
  u["model"]["unk_token"] = "<unk>";
  expectMentions(loadError(u.dump()), {"unk_token", "<unk>"});
}

TEST(TokenizerErrors, MissingFile) {
  try {
    Tokenizer::fromFile("/nonexistent/dir/tokenizer.json");
    FAIL() << "no error";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("/nonexistent/dir/tokenizer.json"), std::string::npos);
  }
}

TEST(TokenizerErrors, InvalidUtf8InputIsReplacedNotFatal) {
  auto j = test::tinyBpe(test::asciiChars());
  j["model"]["unk_token"] = "?";
  const auto e = Tokenizer::fromJson(j.dump(), "t.json").encode("a\xFF" "b");
  EXPECT_EQ(e.tokens, (std::vector<std::string>{"a", "?", "b"}));  // U+FFFD is unknown
  EXPECT_EQ(e.offsets, (std::vector<std::pair<size_t, size_t>>{{0, 1}, {1, 2}, {2, 3}}));
}

}  // namespace
}  // namespace mechscope
