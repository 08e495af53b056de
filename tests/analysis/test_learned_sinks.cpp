// The sinks analysis on gpt-oss accounts for its learned sinks: sink scores are over the keys (HF's attention
// weights, the sink column dropped) and learned_sink_mass is the rest of each row, 1 − Σ_j A[l,h,i,j],
// checked against Hugging Face's own attention weights of the fixture, by the probe and the materialised
// pattern alike.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <filesystem>

#include "analysis/sinks/sinks.hpp"
#include "core/model/hooked_transformer.hpp"
#include "core/safetensors/safetensors_file.hpp"

using namespace mechscope;

namespace {

std::filesystem::path learnedSinkFixture(const std::string& name) {
  return std::filesystem::path(MECHSCOPE_SOURCE_DIR) / "tests" / "data" / "families" / name;
}

std::vector<std::vector<int64_t>> fixtureRows(const SafetensorsFile& ref) {
  const at::Tensor ids = ref.tensor("input_ids").contiguous();  // [2, 24]
  std::vector<std::vector<int64_t>> rows;
  for (int64_t b = 0; b < ids.size(0); ++b) rows.emplace_back(ids[b].data_ptr<int64_t>(), ids[b].data_ptr<int64_t>() + ids.size(1));
  return rows;
}

TEST(LearnedSinks, SinkMassEqualsWhatHuggingFacesRowsLeaveOut) {
  const auto dir = learnedSinkFixture("gpt_oss");
  auto m = HookedTransformer::load(dir);
  const auto ref = SafetensorsFile::open(dir / "reference.safetensors");
  const at::Tensor attn = ref.tensor("attentions").to(at::kDouble);  // [L, batch, head, query, key]
  const at::Tensor expected = (1 - attn.sum(-1)).mean(-1).mean(1);    // [L, head]: mean over queries, then rows
  analysis::SinksOptions o;
  o.bosPosition = 0;
  for (bool materialize : {false, true}) {
    o.materialize = materialize;
    const analysis::SinksResult r = analysis::runSinks(*m, fixtureRows(ref), o);
    ASSERT_TRUE(r.learnedSinkMass.defined());
    const double err = (r.learnedSinkMass - expected).abs().max().item<double>();
    std::printf("[learned-sinks] %s: learned_sink_mass vs HF max|err| %.3g (mass up to %.3f)\n", materialize ? "materialised" : "probe", err,
                expected.max().item<double>());
    EXPECT_LE(err, 1e-5);  // fp32 attention vs HF's fp32 attention: ≤ 5e-6 per entry (parity), averaged
    // The primary sink's score: the keys-only pattern's column 0 over later queries, as HF's weights give it.
    const at::Tensor col0 = attn.select(-1, 0).narrow(-1, 1, 23).mean(-1).mean(1);  // [L, head]
    EXPECT_LE((r.sinkScore - col0).abs().max().item<double>(), 1e-5);
    const auto json = analysis::sinksToResult(r, o).json;
    EXPECT_TRUE(json.contains("learned_sink_mass"));
  }
  EXPECT_GT(expected.max().item<double>(), 0.05);  // the fixture's sinks take a visible share
  // A model without learned sinks reports none.
  auto dense = HookedTransformer::load(learnedSinkFixture("qwen3_moe"));
  const analysis::SinksResult r = analysis::runSinks(*dense, fixtureRows(SafetensorsFile::open(learnedSinkFixture("qwen3_moe") / "reference.safetensors")), o);
  EXPECT_FALSE(r.learnedSinkMass.defined());
  EXPECT_FALSE(analysis::sinksToResult(r, o).json.contains("learned_sink_mass"));
}

}  // namespace
