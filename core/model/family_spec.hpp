#pragma once
// FamilySpec: everything family-specific, in one table entry per family (core/model/families/*.cpp):
// how config.json maps onto ModelConfig and how HF tensor names/layouts map onto ModelWeights.
#include <functional>
#include <string>
#include <vector>

#include "core/model/model_config.hpp"
#include "core/model/model_weights.hpp"
#include "core/model/weight_source.hpp"

namespace mechscope {

/// One supported Hugging Face model family.
struct FamilySpec {
  std::string modelType;    ///< config.json model_type
  std::string description;  ///< one line for `mechscope-cli list`
  /// Fills every ModelConfig field from config.json (modelType and raw are set by the caller).
  std::function<void(const ConfigReader&, ModelConfig&)> parseConfig;
  /// Reads the weights, converting HF layouts to the canonical ones.
  std::function<ModelWeights(const WeightSource&, const ModelConfig&)> loadWeights;
};

/// The spec for `modelType`, or nullptr.
const FamilySpec* findFamily(const std::string& modelType);
/// Every spec, in listing order.
const std::vector<const FamilySpec*>& familySpecs();
/// "gpt2, gpt_neox, ..." for error messages.
std::string supportedModelTypes();

// One accessor per family file.
const FamilySpec& gpt2Family();
const FamilySpec& gptNeoxFamily();
const FamilySpec& llamaFamily();
const FamilySpec& mistralFamily();
const FamilySpec& qwen2Family();
const FamilySpec& qwen3Family();
const FamilySpec& phi3Family();
const FamilySpec& olmo2Family();
const FamilySpec& gemma2Family();
const FamilySpec& gemma3TextFamily();
const FamilySpec& gemma3Family();
const FamilySpec& mixtralFamily();
const FamilySpec& qwen2MoeFamily();
const FamilySpec& qwen3MoeFamily();
const FamilySpec& gptOssFamily();

}  // namespace mechscope
