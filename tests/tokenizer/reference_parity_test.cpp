// Every entry of the Hugging Face reference encodings (ids, ids with special tokens, offsets, decode)
// must match for GPT-2, Llama-2, Llama-3 and Qwen3; plus the extended set when present.
#include <fstream>
#include <map>
#include <sstream>

#include <fmt/format.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "core/tokenizer/tokenizer.hpp"
#include "tests/tokenizer/shared_dir.hpp"

namespace mechscope {
namespace {

nlohmann::json readJson(const std::filesystem::path& p) {
  std::ifstream in(p);
  std::stringstream ss;
  ss << in.rdbuf();
  return nlohmann::json::parse(ss.str());
}

const Tokenizer& tokenizerFor(const std::string& name) {
  static std::map<std::string, Tokenizer> cache;
  auto it = cache.find(name);
  if (it == cache.end()) it = cache.emplace(name, Tokenizer::fromFile(*test::tokenizerFixtures() / name)).first;
  return it->second;
}

struct Tally {
  size_t entries = 0, idsOk = 0, specialOk = 0, offsetsOk = 0, decodeOk = 0;
};

// Compare every record of `refs[name]`; prints the first few mismatches in full.
Tally checkAll(const std::string& name, const nlohmann::json& records) {
  const Tokenizer& tok = tokenizerFor(name);
  Tally t;
  int shown = 0;
  for (const auto& r : records) {
    ++t.entries;
    const std::string text = r.at("text").get<std::string>();
    const auto enc = tok.encode(text, false);
    const auto encS = tok.encode(text, true);
    const auto ids = r.at("ids").get<std::vector<int64_t>>();
    const auto idsS = r.at("ids_special").get<std::vector<int64_t>>();
    std::vector<std::pair<size_t, size_t>> offs;
    for (const auto& o : r.at("offsets")) offs.emplace_back(o.at(0).get<size_t>(), o.at(1).get<size_t>());
    const std::string decoded = r.at("decoded").get<std::string>();
    const std::string mine = tok.decode(ids, false);
    const bool a = enc.ids == ids, b = encS.ids == idsS, c = enc.offsets == offs, d = mine == decoded;
    t.idsOk += a;
    t.specialOk += b;
    t.offsetsOk += c;
    t.decodeOk += d;
    if ((!a || !b || !c || !d) && shown++ < 5) {
      nlohmann::json got = {{"ids", enc.ids}, {"ids_special", encS.ids}, {"offsets", enc.offsets}, {"decoded", mine}};
      ADD_FAILURE() << name << " mismatch for " << nlohmann::json(text).dump() << "\n expected " << r.dump()
                    << "\n got      " << got.dump();
    }
  }
  return t;
}

class ReferenceParity : public ::testing::TestWithParam<std::string> {};

TEST_P(ReferenceParity, MatchesHuggingFaceEveryEntry) {
  const auto dir = test::tokenizerFixtures();
  if (!dir) GTEST_SKIP() << "shared/fixtures/tokenizers not found (set MECHSCOPE_SHARED)";
  const auto refs = readJson(*dir / "reference_encodings.json");
  const auto t = checkAll(GetParam(), refs.at(GetParam()));
  EXPECT_GE(t.entries, 30u);
  EXPECT_EQ(t.idsOk, t.entries);
  EXPECT_EQ(t.specialOk, t.entries);
  EXPECT_EQ(t.offsetsOk, t.entries);
  EXPECT_EQ(t.decodeOk, t.entries);
  std::cout << fmt::format("[{}] {} entries: ids {}, ids_special {}, offsets {}, decode {}\n", GetParam(), t.entries,
                           t.idsOk, t.specialOk, t.offsetsOk, t.decodeOk);
}

TEST_P(ReferenceParity, MatchesExtendedReferences) {
  const auto dir = test::tokenizerFixtures();
  if (!dir) GTEST_SKIP() << "shared/fixtures/tokenizers not found (set MECHSCOPE_SHARED)";
  const auto ext = std::filesystem::path(MECHSCOPE_SOURCE_DIR) / "tests/data/tokenizer/reference_extended.json";
  if (!std::filesystem::exists(ext))
    GTEST_SKIP() << ext.string() << " not present yet (generate it with scripts/device/tokenizer_make_refs.py on a box with tokenizers)";
  const auto refs = readJson(ext);
  if (!refs.contains(GetParam())) GTEST_SKIP() << "no extended references for " << GetParam();
  const auto t = checkAll(GetParam(), refs.at(GetParam()));
  EXPECT_EQ(t.idsOk, t.entries);
  EXPECT_EQ(t.specialOk, t.entries);
  EXPECT_EQ(t.offsetsOk, t.entries);
  EXPECT_EQ(t.decodeOk, t.entries);
  std::cout << fmt::format("[{} extended] {} entries: ids {}, ids_special {}, offsets {}, decode {}\n", GetParam(), t.entries,
                           t.idsOk, t.specialOk, t.offsetsOk, t.decodeOk);
}

INSTANTIATE_TEST_SUITE_P(Fixtures, ReferenceParity, ::testing::Values("gpt2", "llama2", "llama3", "qwen3"));

}  // namespace
}  // namespace mechscope
