// sinks and waad-fai on a random GPT-2-like model built in memory: time and peak CPU tensor memory
// (CpuMemoryMeter) at 4K / 16K / 64K tokens. Counters: peak_bytes, pattern_bytes (one layer's
// [heads, n, n] fp32 pattern, what a materialising tool holds at least).
//   ./build/bench/bench_attention_analyses --benchmark_filter='Sinks/4096|WaadFai/4096'
//   MECHSCOPE_BENCH_MODEL=gpt2-small ./build/bench/bench_attention_analyses --benchmark_filter=SinksCandidatePass
// Model size via MECHSCOPE_BENCH_MODEL=tiny (2 layers, 4 heads, d_model 64; default) or gpt2-small
// (12 layers, 12 heads, d_model 768).
#include <benchmark/benchmark.h>

#include <ATen/ATen.h>

#include <cstdlib>
#include <memory>
#include <random>
#include <string>

#include <nlohmann/json.hpp>

#include "analysis/common/attention_stats.hpp"
#include "analysis/sinks/sinks.hpp"
#include "analysis/waad_fai/waad_fai.hpp"
#include "core/model/model_config.hpp"
#include "core/probe/cpu_memory_meter.hpp"

namespace {

using namespace mechscope;

struct Shape {
  int layers, heads, dModel;
};

Shape benchShape() {
  const char* m = std::getenv("MECHSCOPE_BENCH_MODEL");
  if (m && std::string(m) == "gpt2-small") return {12, 12, 768};
  return {2, 4, 64};
}

std::unique_ptr<HookedTransformer> randomModel(int nCtx) {
  const Shape s = benchShape();
  const int vocab = 1000;
  const nlohmann::json cfgJson = {{"model_type", "gpt2"}, {"n_layer", s.layers}, {"n_head", s.heads}, {"n_embd", s.dModel},
                                  {"n_positions", nCtx},  {"vocab_size", vocab},  {"activation_function", "gelu_new"},
                                  {"layer_norm_epsilon", 1e-5}};
  ModelConfig cfg = ModelConfig::fromJson(cfgJson, "bench");
  at::manual_seed(1);
  const int64_t d = s.dModel, m = 4 * d;
  auto r = [](std::vector<int64_t> shape) { return at::randn(shape) * 0.3; };
  ModelWeights w;
  w.wE = r({vocab, d});
  w.wPos = r({nCtx, d}) * 0.1;
  for (int l = 0; l < s.layers; ++l) {
    LayerWeights L;
    L.ln1W = L.ln2W = at::ones({d});
    L.ln1B = L.ln2B = at::zeros({d});
    L.wQ = r({d, d});
    L.wK = r({d, d});
    L.wV = r({d, d});
    L.wO = r({d, d});
    L.bQ = r({d});
    L.bK = r({d});
    L.bV = r({d});
    L.bO = r({d});
    L.wIn = r({m, d});
    L.bIn = r({m});
    L.wOut = r({d, m});
    L.bOut = r({d});
    w.layers.push_back(L);
  }
  w.lnFinalW = at::ones({d});
  w.lnFinalB = at::zeros({d});
  w.wU = w.wE;
  return std::make_unique<HookedTransformer>(cfg, w, at::Device(at::kCPU), at::kFloat);
}

std::vector<int64_t> ids(int64_t n) {
  std::mt19937_64 rng(3);
  std::vector<int64_t> v(static_cast<size_t>(n));
  for (auto& x : v) x = static_cast<int64_t>(rng() % 999) + 1;
  v[0] = 0;
  return v;
}

template <class Fn>
void runBench(benchmark::State& state, Fn fn) {
  const int64_t n = state.range(0);
  auto model = randomModel(static_cast<int>(n));
  const auto tokens = ids(n);
  int64_t peak = 0;
  for (auto _ : state) {
    CpuMemoryMeter meter;
    fn(*model, tokens);
    peak = std::max(peak, meter.peakBytes());
  }
  state.counters["peak_bytes"] = static_cast<double>(peak);
  state.counters["pattern_bytes"] = static_cast<double>(int64_t{4} * model->config().nHeads * n * n);
}

void BM_Sinks(benchmark::State& state) {
  runBench(state, [](const HookedTransformer& m, const std::vector<int64_t>& t) { benchmark::DoNotOptimize(analysis::runSinks(m, {t})); });
}
void BM_WaadFai(benchmark::State& state) {
  runBench(state, [](const HookedTransformer& m, const std::vector<int64_t>& t) { benchmark::DoNotOptimize(analysis::runWaadFai(m, {t})); });
}

/// sinks' candidates' pass alone (two candidate columns), after a first pass that kept the row normalisers and, with
/// range(1) = 1, the residual stream: q and k from the kept residuals against a whole forward again.
void BM_SinksCandidatePass(benchmark::State& state) {
  const int64_t n = state.range(0);
  auto model = randomModel(static_cast<int>(n));
  const auto tokens = ids(n);
  ProbeRequest req;
  req.columnKeys = {5, 9};
  std::vector<at::Tensor> lse, resid;
  analysis::AttentionStatsOptions first;
  first.keepResidPre = &resid;
  analysis::runAttentionStats(*model, tokens, req, [&](int, const ProbeResult& s) { lse.push_back(s.rowLse); }, first);
  analysis::AttentionStatsOptions again;
  again.rowLse = &lse;
  if (state.range(1) == 1) again.residPre = &resid;
  for (auto _ : state)
    analysis::runAttentionStats(*model, tokens, req, [](int, const ProbeResult& s) { benchmark::DoNotOptimize(s.columnKeySums); }, again);
}

BENCHMARK(BM_SinksCandidatePass)->Args({4096, 0})->Args({4096, 1})->Args({16384, 0})->Args({16384, 1})->Iterations(3)
    ->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_Sinks)->Arg(4096)->Arg(16384)->Arg(65536)->Iterations(1)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_WaadFai)->Arg(4096)->Arg(16384)->Arg(65536)->Iterations(1)->Unit(benchmark::kMillisecond)->UseRealTime();

}  // namespace

BENCHMARK_MAIN();
