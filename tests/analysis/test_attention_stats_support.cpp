#include "tests/analysis/test_attention_stats_support.hpp"

#include <ATen/ATen.h>

#include <random>

#include "core/model/model_config.hpp"
#include "core/synth/planted_model.hpp"
#include "tests/common/scratch_root.hpp"

namespace mechscope::test {

std::filesystem::path sharedDir() {
  if (const char* env = std::getenv("MECHSCOPE_SHARED"); env && std::filesystem::is_directory(env)) return env;
#ifdef MECHSCOPE_SHARED_DIR
  if (std::filesystem::is_directory(MECHSCOPE_SHARED_DIR)) return MECHSCOPE_SHARED_DIR;
#endif
  return {};
}

std::filesystem::path fixtureModel(const std::string& family) {
  if (const auto s = sharedDir(); !s.empty()) {
    const auto p = s / "fixtures" / "models" / family;
    if (std::filesystem::exists(p / "config.json")) return p;
  }
  // Issue #23's families ship in the repository (tests/data/families/README.md).
  const auto repo = std::filesystem::path(MECHSCOPE_SOURCE_DIR) / "tests" / "data" / "families" / family;
  return std::filesystem::exists(repo / "config.json") ? repo : std::filesystem::path{};
}

const AttnPlanted& attnPlanted() {
  static const AttnPlanted fixture = [] {
    AttnPlanted f;
    f.folder = test::scratchRoot() / "attn-planted";
    planted::writePlantedFolder(f.folder);
    f.model = HookedTransformer::load(f.folder);
    f.planted = planted::readPlantedJson(f.folder);
    return f;
  }();
  return fixture;
}

std::unique_ptr<HookedTransformer> randomGpt2(int nLayers, int nHeads, int dModel, int nCtx, int vocab, double stdev, uint64_t seed) {
  const nlohmann::json cfgJson = {{"model_type", "gpt2"},       {"n_layer", nLayers}, {"n_head", nHeads},
                                  {"n_embd", dModel},           {"n_positions", nCtx}, {"vocab_size", vocab},
                                  {"activation_function", "gelu_new"}, {"layer_norm_epsilon", 1e-5}};
  ModelConfig cfg = ModelConfig::fromJson(cfgJson, "randomGpt2");
  at::manual_seed(seed);
  auto r = [&](std::vector<int64_t> shape) { return at::randn(shape) * stdev; };
  const int64_t d = dModel, m = 4 * dModel;
  ModelWeights w;
  w.wE = r({vocab, d});
  w.wPos = r({nCtx, d}) * 0.1;
  for (int l = 0; l < nLayers; ++l) {
    LayerWeights L;
    L.ln1W = at::ones({d});
    L.ln1B = at::zeros({d});
    L.ln2W = at::ones({d});
    L.ln2B = at::zeros({d});
    L.wQ = r({d, d});
    L.bQ = r({d});
    L.wK = r({d, d});
    L.bK = r({d});
    L.wV = r({d, d});
    L.bV = r({d});
    L.wO = r({d, d});
    L.bO = r({d});
    L.wIn = r({m, d});
    L.bIn = r({m});
    L.wOut = r({d, m}) * 0.5;
    L.bOut = r({d});
    w.layers.push_back(L);
  }
  w.lnFinalW = at::ones({d});
  w.lnFinalB = at::zeros({d});
  w.wU = w.wE;
  return std::make_unique<HookedTransformer>(cfg, w, at::Device(at::kCPU), at::kFloat);
}

std::vector<at::Tensor> materialisedPatterns(const HookedTransformer& model, const std::vector<int64_t>& ids) {
  ForwardOptions fo;
  fo.path = AttentionPath::Explicit;
  const auto cache = model.runWithCache(at::tensor(at::ArrayRef<int64_t>(ids), at::kLong).unsqueeze(0), {"blocks.*.attn.hook_pattern"}, fo);
  std::vector<at::Tensor> out;
  for (int l = 0; l < model.config().nLayers; ++l) out.push_back(cache.at("pattern", l)[0].to(at::kDouble));
  return out;
}

std::vector<int64_t> randomIds(int64_t n, int64_t vocab, uint64_t seed, int64_t bos) {
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<int64_t> dist(1, vocab - 1);
  std::vector<int64_t> ids;
  for (int64_t i = 0; i < n; ++i) ids.push_back(i == 0 && bos >= 0 ? bos : dist(rng));
  return ids;
}

}  // namespace mechscope::test
