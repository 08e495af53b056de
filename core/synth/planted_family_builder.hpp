#pragma once
// The per-family planted recipe (`mechscope-cli plant --family F`, F ≠ gpt2): a BOS sink head, a
// previous-token head and an induction (= needle-retrieval) head built in the canonical weights and written
// through the family's own loader (core/synth/loader_inverse.hpp). The arithmetic behind every bound is in
// docs/planted-models.md, "Every family".
#include <string>

#include "core/synth/planted_builder.hpp"

namespace mechscope::planted {

/// Builds family `family`'s planted model (not gpt2): HF tensors, config.json and planted.json (every planted
/// head, its role, and the attention bounds the construction guarantees). Throws Error when the family's
/// rotary frequencies cannot carry the recipe within its bounds.
PlantedWeights buildFamilyPlantedWeights(const std::string& family);

}  // namespace mechscope::planted
