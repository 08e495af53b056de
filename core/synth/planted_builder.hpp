#pragma once
// Builds the planted-circuit GPT-2 weights: every head and MLP neuron is set by hand (tracr-style)
// so each analysis has a known right answer. The arithmetic is in docs/planted-models.md.
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/common/tensor.hpp"

namespace mechscope::planted {

/// A built planted model: Hugging Face GPT-2 tensors, its config.json and planted.json contents.
struct PlantedWeights {
  std::vector<std::pair<std::string, at::Tensor>> tensors;  ///< HF names (transformer.h.0.attn.c_attn.weight, …)
  nlohmann::json config;                                     ///< config.json
  nlohmann::json planted;                                    ///< planted.json: every planted head/MLP and its role
};

/// The recipes `mechscope-cli plant --recipe` accepts.
std::vector<std::string> plantedRecipes();

/// Build the weights of a recipe ("default"); throws InputError for an unknown recipe.
PlantedWeights buildPlantedWeights(const std::string& recipe = "default");

}  // namespace mechscope::planted
