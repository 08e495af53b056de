#pragma once
// config.json of the per-family planted models (`mechscope-cli plant --family F`): one small shape for every
// family, with each family's own quirks switched on (see docs/planted-models.md, "Every family").
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace mechscope::planted {

/// Sizes shared by every per-family planted model.
struct FamilyShape {
  static constexpr int kLayers = 2;
  static constexpr int kHeads = 4;
  static constexpr int kDHead = 128;
  static constexpr int kDModel = kHeads * kDHead;  // 512: d_model = heads · d_head in every family
  static constexpr int kMlp = 64;                  // MLP (and expert) width; every MLP weight is zero
  static constexpr int kCtx = 4096;
  static constexpr int kWindow = 512;               // sliding windows, longer than kMaxPositions
  static constexpr int kMaxPositions = 160;         // the planted bounds hold for prompts this long (BOS included)
};

/// Families `plant --family` accepts: gpt2 (the full GPT-2 recipe) and every family of `synth`.
std::vector<std::string> plantedFamilies();

/// The config.json of family `family`'s planted model (not gpt2); InputError for an unknown family.
nlohmann::json plantedFamilyConfig(const std::string& family);

}  // namespace mechscope::planted
