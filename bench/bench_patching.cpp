// Batched activation patching vs the one-forward-per-cell loop on a gpt2-small-shaped random model
// (12 layers × 12 heads, d_model 768, d_mlp 3072, vocab 50257), full layer × head sweep of head_out.
// Results: docs/benchmarks.md ("Activation patching").
#include <ATen/ATen.h>
#include <benchmark/benchmark.h>

#include <memory>

#include "analysis/patching/activation_patching.hpp"
#include "core/model/hooked_transformer.hpp"

namespace {

using namespace mechscope;

const HookedTransformer& gpt2Small() {
  static const std::unique_ptr<HookedTransformer> model = [] {
    at::manual_seed(0);
    ModelConfig c;
    c.modelType = "gpt2";
    c.nLayers = 12;
    c.dModel = 768;
    c.nHeads = 12;
    c.nKvHeads = 12;
    c.dHead = 64;
    c.dMlp = 3072;
    c.dVocab = 50257;
    c.nCtx = 1024;
    c.attnQkvBias = c.attnOutBias = c.mlpBias = c.normBias = true;
    c.tiedEmbeddings = true;
    auto r = [](std::vector<int64_t> s) { return at::randn(s) * 0.02; };
    ModelWeights w;
    w.wE = r({c.dVocab, c.dModel});
    w.wPos = r({c.nCtx, c.dModel});
    for (int l = 0; l < c.nLayers; ++l) {
      LayerWeights L;
      L.ln1W = at::ones({c.dModel});
      L.ln1B = at::zeros({c.dModel});
      L.wQ = r({c.dModel, c.dModel});
      L.wK = r({c.dModel, c.dModel});
      L.wV = r({c.dModel, c.dModel});
      L.bQ = L.bK = L.bV = at::zeros({c.dModel});
      L.wO = r({c.dModel, c.dModel});
      L.bO = at::zeros({c.dModel});
      L.ln2W = at::ones({c.dModel});
      L.ln2B = at::zeros({c.dModel});
      L.wIn = r({c.dMlp, c.dModel});
      L.bIn = at::zeros({c.dMlp});
      L.wOut = r({c.dModel, c.dMlp});
      L.bOut = at::zeros({c.dModel});
      w.layers.push_back(L);
    }
    w.lnFinalW = at::ones({c.dModel});
    w.lnFinalB = at::zeros({c.dModel});
    w.wU = w.wE;
    return std::make_unique<HookedTransformer>(c, w, at::Device(at::kCPU), at::kFloat);
  }();
  return *model;
}

analysis::PatchInputs inputs(int64_t batch, int64_t pos) {
  at::manual_seed(1);
  analysis::PatchInputs in;
  in.clean = at::randint(0, 50257, {batch, pos}, at::kLong);
  in.corrupt = in.clean.clone();
  in.corrupt.select(1, 2).copy_(at::randint(0, 50257, {batch}, at::kLong));
  in.correct = at::randint(0, 50257, {batch}, at::kLong);
  in.incorrect = at::randint(0, 50257, {batch}, at::kLong);
  return in;
}

void run(benchmark::State& state, bool batched) {
  const auto& m = gpt2Small();
  const auto in = inputs(state.range(0), state.range(1));
  analysis::PatchParams p;
  p.component = analysis::PatchComponent::HeadOut;
  p.maxBatchRows = 12 * state.range(0);  // one layer's 12 variants per forward
  int forwards = 0;
  for (auto _ : state) {
    const auto r = batched ? analysis::activationPatch(m, in, p) : analysis::activationPatchLoop(m, in, p);
    forwards = r.forwards;
    benchmark::DoNotOptimize(r.scores.data_ptr());
  }
  state.counters["forwards"] = forwards;
  state.counters["cells"] = 144;
}

void BM_HeadSweepLoop(benchmark::State& s) { run(s, false); }
void BM_HeadSweepBatched(benchmark::State& s) { run(s, true); }

void BM_HeadSweepAttribution(benchmark::State& state) {
  const auto& m = gpt2Small();
  const auto in = inputs(state.range(0), state.range(1));
  analysis::PatchParams p;
  for (auto _ : state) benchmark::DoNotOptimize(analysis::attributionPatch(m, in, p).scores.data_ptr());
}

// Args: {prompts, tokens}.
BENCHMARK(BM_HeadSweepLoop)->Args({1, 16})->Args({4, 16})->Unit(benchmark::kMillisecond)->Iterations(1);
BENCHMARK(BM_HeadSweepBatched)->Args({1, 16})->Args({4, 16})->Unit(benchmark::kMillisecond)->Iterations(2);
BENCHMARK(BM_HeadSweepAttribution)->Args({1, 16})->Args({4, 16})->Unit(benchmark::kMillisecond)->Iterations(2);

}  // namespace

BENCHMARK_MAIN();
