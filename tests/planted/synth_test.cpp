// `synth` folders load in the engine for every family: names and shapes come from the family loaders.
#include <gtest/gtest.h>

#include <ATen/ATen.h>


#include "core/common/errors.hpp"
#include "core/common/remove_tree.hpp"
#include "core/model/hooked_transformer.hpp"
#include "core/safetensors/safetensors_file.hpp"
#include "core/synth/synth_model.hpp"
#include "tests/common/scratch_root.hpp"

namespace mechscope::test {
namespace {

class SynthFamilies : public ::testing::TestWithParam<std::string> {};

TEST_P(SynthFamilies, TinyFolderLoadsAndRuns) {
  const auto dir = test::freshScratchDir("synth-" + GetParam());
  const int64_t params = synth::writeSynthFolder(dir, GetParam(), "tiny", 3);
  const auto model = HookedTransformer::load(dir);
  EXPECT_EQ(model->config().modelType, GetParam());
  EXPECT_EQ(model->config().nLayers, 2);
  EXPECT_EQ(model->parameterCount(), params);
  const auto logits = model->forward(at::arange(8, at::kLong).unsqueeze(0)).logits;
  EXPECT_EQ(logits.sizes(), (at::IntArrayRef{1, 8, 1000}));
  EXPECT_TRUE(logits.isfinite().all().item<bool>());
  // Deterministic in the seed: a second folder with the same seed holds identical bytes.
  const auto dir2 = dir.string() + "-again";
  synth::writeSynthFolder(dir2, GetParam(), "tiny", 3);
  const auto a = SafetensorsFile::open(dir / "model.safetensors");
  const auto b = SafetensorsFile::open(std::filesystem::path(dir2) / "model.safetensors");
  for (const auto& name : a.names()) EXPECT_TRUE(at::equal(a.tensor(name), b.tensor(name))) << name;
  mechscope::removeTree(dir);
  mechscope::removeTree(dir2);
}

INSTANTIATE_TEST_SUITE_P(All, SynthFamilies, ::testing::Values("gpt2", "gpt_neox", "llama", "mistral", "qwen2", "qwen3", "phi3",
                                                             "olmo2", "gemma2", "gemma3_text", "mixtral", "qwen2_moe", "qwen3_moe",
                                                             "gpt_oss"));

TEST(Synth, RealisticPresetsHaveTheirShapes) {
  EXPECT_EQ(synth::presetConfig("qwen3", "qwen3-0.6b")["num_hidden_layers"], 28);
  EXPECT_EQ(synth::presetConfig("gpt2", "gpt2-small")["n_embd"], 768);
  EXPECT_THROW(synth::presetConfig("gpt2", "qwen3-0.6b"), InputError);
  EXPECT_THROW(synth::presetConfig("gpt2", "huge"), InputError);
}

}  // namespace
}  // namespace mechscope::test
