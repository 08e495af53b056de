// The planted folder is an ordinary checkpoint: Hugging Face transformers 5.17 + tokenizers 0.23
// loaded it on the GPU box (scripts/device/planted_hf_check.py) and recorded its logits and token
// ids (tests/data/planted/). Our engine and tokenizer must reproduce them.
#include <gtest/gtest.h>

#include <ATen/ATen.h>

#include <fstream>

#include <nlohmann/json.hpp>

#include "core/safetensors/safetensors_file.hpp"
#include "core/tokenizer/tokenizer.hpp"
#include "tests/planted/planted_fixture.hpp"

namespace mechscope::test {
namespace {

const std::filesystem::path kData = std::filesystem::path(MECHSCOPE_SOURCE_DIR) / "tests/data/planted";

TEST(PlantedHfParity, LogitsMatchTransformers) {
  const auto ref = SafetensorsFile::open(kData / "planted_hf_reference.safetensors");
  const auto ids = ref.tensor("input_ids");   // [4, 15]
  const auto want = ref.tensor("logits");     // [4, 15, 62]
  const auto got = plantedFixture().model->forward(ids).logits;
  const double err = (got - want).abs().max().item<double>();
  EXPECT_LE(err, 1e-4) << "max |logit − HF logit| = " << err;
  RecordProperty("max_abs_err", std::to_string(err));
}

TEST(PlantedHfParity, TokenizerMatchesHuggingFaceTokenizers) {
  std::ifstream in(kData / "planted_hf_reference.json");
  const auto ref = nlohmann::json::parse(in);
  const auto tok = Tokenizer::fromFile(plantedFixture().folder);
  for (size_t i = 0; i < ref["texts"].size(); ++i) {
    const auto enc = tok.encode(ref["texts"][i].get<std::string>(), true);
    EXPECT_EQ(enc.ids, ref["ids"][i].get<std::vector<int64_t>>()) << ref["texts"][i];
    std::vector<std::pair<size_t, size_t>> offsets;
    for (const auto& o : ref["offsets"][i]) offsets.emplace_back(o[0].get<size_t>(), o[1].get<size_t>());
    EXPECT_EQ(enc.offsets, offsets) << ref["texts"][i];
  }
  EXPECT_EQ(ref["greedy"]["ioi"]["continuation"].get<std::string>().substr(0, 4), "Mary");
  EXPECT_EQ(ref["greedy"]["needle"]["continuation"], "number seven hundred twelve");
}

}  // namespace
}  // namespace mechscope::test
