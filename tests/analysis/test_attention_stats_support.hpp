#pragma once
// Shared helpers of the attention-analysis tests: fixture models (skip when /work/shared is absent),
// the planted model written once per binary, a random GPT-2 built in memory, and materialised runs.
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/model/hooked_transformer.hpp"

namespace mechscope::test {

/// The shared/ folder ($MECHSCOPE_SHARED, else MECHSCOPE_SHARED_DIR); empty when absent.
std::filesystem::path sharedDir();

/// A fixture model folder (shared/fixtures/models/<family>), empty when absent.
std::filesystem::path fixtureModel(const std::string& family);

#define MECHSCOPE_ATTN_FIXTURE_OR_SKIP(var, family)                                              \
  const std::filesystem::path var = ::mechscope::test::fixtureModel(family);                    \
  if (var.empty()) GTEST_SKIP() << "fixture model '" << family << "' absent (set MECHSCOPE_SHARED)"

/// The planted model: folder written once per test binary, loaded, and its planted.json.
struct AttnPlanted {
  std::filesystem::path folder;
  std::unique_ptr<HookedTransformer> model;
  nlohmann::json planted;
};
const AttnPlanted& attnPlanted();

/// A GPT-2 with random weights (std `stdev`), built in memory (no files).
std::unique_ptr<HookedTransformer> randomGpt2(int nLayers, int nHeads, int dModel, int nCtx, int vocab, double stdev = 0.3,
                                              uint64_t seed = 1);

/// Patterns [head, query, key] (fp64) of every layer from an explicit forward over `ids`.
std::vector<at::Tensor> materialisedPatterns(const HookedTransformer& model, const std::vector<int64_t>& ids);

/// Deterministic token ids in [1, vocab) of length n (first = bos when ≥ 0).
std::vector<int64_t> randomIds(int64_t n, int64_t vocab, uint64_t seed, int64_t bos = -1);

}  // namespace mechscope::test
