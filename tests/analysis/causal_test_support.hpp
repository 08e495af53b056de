#pragma once
// Helpers of the causal-analysis tests: the shared fixtures folder, a planted model, token batches.
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "analysis/patching/patch_types.hpp"
#include "core/model/hooked_transformer.hpp"
#include "core/synth/planted_model.hpp"
#include "core/synth/planted_tasks.hpp"
#include "core/synth/planted_vocab.hpp"
#include "tests/common/scratch_root.hpp"

namespace mechscope::test {

/// $MECHSCOPE_SHARED, else the compile-time MECHSCOPE_SHARED_DIR; empty when neither exists.
inline std::filesystem::path causalSharedDir() {
  if (const char* env = std::getenv("MECHSCOPE_SHARED"); env && std::filesystem::exists(env)) return env;
#ifdef MECHSCOPE_SHARED_DIR
  if (std::filesystem::exists(MECHSCOPE_SHARED_DIR)) return MECHSCOPE_SHARED_DIR;
#endif
  return {};
}

/// The planted model, written once per test binary into a temporary folder.
struct CausalPlanted {
  std::filesystem::path folder;
  std::unique_ptr<HookedTransformer> model;
};
inline const CausalPlanted& causalPlanted() {
  static const CausalPlanted p = [] {
    CausalPlanted c;
    c.folder = test::scratchRoot() / "causal-test";
    planted::writePlantedFolder(c.folder);
    c.model = HookedTransformer::load(c.folder);
    return c;
  }();
  return p;
}

/// Planted task prompts as patch inputs; only prompts as long as the first one are kept (IOI templates
/// differ in length by one word).
inline analysis::PatchInputs plantedInputs(const std::vector<planted::TaskPrompt>& prompts) {
  std::vector<int64_t> clean, corrupt, correct, incorrect;
  const auto len = static_cast<int64_t>(planted::toIds(prompts.at(0).words).size());
  int64_t n = 0;
  for (const auto& p : prompts) {
    auto a = planted::toIds(p.words), b = planted::toIds(p.corrupted);
    if (static_cast<int64_t>(a.size()) != len) continue;
    ++n;
    clean.insert(clean.end(), a.begin(), a.end());
    corrupt.insert(corrupt.end(), b.begin(), b.end());
    correct.push_back(planted::tokenId(p.answer));
    incorrect.push_back(planted::tokenId(p.incorrect));
  }
  analysis::PatchInputs in;
  in.clean = at::tensor(clean, at::kLong).view({n, len});
  in.corrupt = at::tensor(corrupt, at::kLong).view({n, len});
  in.correct = at::tensor(correct, at::kLong);
  in.incorrect = at::tensor(incorrect, at::kLong);
  return in;
}

}  // namespace mechscope::test
