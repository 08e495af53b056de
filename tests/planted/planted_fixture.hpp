#pragma once
// One planted model per test binary, written to a temporary folder and loaded with the engine.
#include <filesystem>
#include <memory>

#include <nlohmann/json.hpp>

#include "core/model/hooked_transformer.hpp"

namespace mechscope::test {

/// The planted folder (written once) and the loaded model.
struct PlantedFixture {
  std::filesystem::path folder;
  std::unique_ptr<HookedTransformer> model;
  nlohmann::json planted;
};

/// The shared fixture (built on first use).
const PlantedFixture& plantedFixture();

/// Attention patterns [head, query, key] of every layer, and the residual after every layer
/// [pos, d_model] (blocks.{l}.hook_resid_post), for one prompt of token ids (BOS first).
struct PlantedRun {
  std::vector<at::Tensor> patterns;
  std::vector<at::Tensor> residPost;
  at::Tensor logits;  // [pos, vocab]
};
PlantedRun runPlanted(const std::vector<int64_t>& ids);

}  // namespace mechscope::test
