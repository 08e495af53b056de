// AttentionProbe vs the materialised pattern: time and peak workspace at n = 1K, 4K, 16K
// (2 heads, d_head 64). Device from MECHSCOPE_BENCH_DEVICE ("cpu", default, or "cuda"); the CUDA
// runs are skipped when this LibTorch has no CUDA device. Counters: peak_bytes (memory allocated by
// the call above what existed before it), contract_bytes (probeWorkspaceBytes, probe only).
#include <ATen/ATen.h>
#include <benchmark/benchmark.h>

#include <cmath>
#include <cstdlib>
#include <limits>
#include <string>
#include <vector>

#include "core/probe/attention_probe.hpp"
#include "core/probe/cpu_memory_meter.hpp"
#include "core/probe/probe_tiles.hpp"

// GPU peak memory from the caching allocator when this build can see the CUDA headers; otherwise the
// CUDA runs report peak_bytes = 0.
#if defined(MECHSCOPE_WITH_CUDA) && __has_include(<c10/cuda/CUDACachingAllocator.h>) && __has_include(<cuda_runtime_api.h>)
#include <c10/cuda/CUDACachingAllocator.h>
#define MECHSCOPE_BENCH_CUDA_STATS 1
#else
#define MECHSCOPE_BENCH_CUDA_STATS 0
#endif

using namespace mechscope;

namespace {

constexpr int64_t kHeads = 2;
constexpr int64_t kDHead = 64;

bool wantCuda() {
  const char* dev = std::getenv("MECHSCOPE_BENCH_DEVICE");
  return dev != nullptr && std::string(dev) == "cuda";
}

/// Statistics of a typical analysis pass: sinks (column sums), retrieval (argmax), WAAD (window),
/// head distance and entropy.
ProbeRequest benchRequest() {
  ProbeRequest r;
  r.columnSums = true;
  r.columnCounts = true;
  r.topK = 1;
  r.distance = true;
  r.window = 10;
  r.entropy = true;
  return r;
}

/// Peak memory of one call on the benchmark's device (CPU: counting allocator; CUDA: caching
/// allocator statistics).
class PeakMeter {
 public:
  explicit PeakMeter(bool cuda) : m_cuda(cuda) {
#if MECHSCOPE_BENCH_CUDA_STATS
    if (m_cuda) {
      c10::cuda::CUDACachingAllocator::resetPeakStats(0);
      m_base = c10::cuda::CUDACachingAllocator::getDeviceStats(0).allocated_bytes[0].current;
      return;
    }
#endif
    m_cpu.resetPeak();
    m_base = m_cpu.currentBytes();
  }
  [[nodiscard]] int64_t peakBytes() const {
#if MECHSCOPE_BENCH_CUDA_STATS
    if (m_cuda) return c10::cuda::CUDACachingAllocator::getDeviceStats(0).allocated_bytes[0].peak - m_base;
#endif
    if (m_cuda) return 0;
    return m_cpu.peakBytes() - m_base;
  }

 private:
  bool m_cuda;
  int64_t m_base = 0;
  CpuMemoryMeter m_cpu;  // installed for the meter's lifetime on either device (cheap)
};

/// Random q/k for n tokens on the benchmark device; false (and a skip message) when unavailable.
bool makeInputs(benchmark::State& state, int64_t n, ProbeInputs& in) {
  const bool cuda = wantCuda();
  if (cuda && !at::hasCUDA()) {
    state.SkipWithError("MECHSCOPE_BENCH_DEVICE=cuda but this LibTorch has no CUDA device");
    return false;
  }
  at::manual_seed(0);
  const auto opts = at::TensorOptions().device(cuda ? at::kCUDA : at::kCPU);
  in.q = at::randn({n, kHeads, kDHead}, opts);  // [pos, head, d_head]
  in.k = at::randn({n, kHeads, kDHead}, opts);  // [pos, head, d_head]
  in.scale = 1.0 / std::sqrt(static_cast<double>(kDHead));
  return true;
}

void BM_ProbeTiled(benchmark::State& state) {
  const int64_t n = state.range(0);
  ProbeInputs in;
  if (!makeInputs(state, n, in)) return;
  const ProbeRequest req = benchRequest();
  int64_t peak = 0;
  for (auto _ : state) {
    PeakMeter meter(in.q.is_cuda());
    ProbeResult r = probeAttention(in, req);
    benchmark::DoNotOptimize(r.entropy.sum().item<double>());  // also synchronises CUDA
    peak = std::max(peak, meter.peakBytes());
  }
  state.counters["peak_bytes"] = static_cast<double>(peak);
  state.counters["contract_bytes"] =
      static_cast<double>(probeWorkspaceBytes(kHeads, kHeads, kDHead, n, n, req, 512, 2048, in.q.is_cuda()));
  state.counters["tokens_per_s"] = benchmark::Counter(static_cast<double>(n), benchmark::Counter::kIsIterationInvariantRate);
}

/// One statistic at a time (range 1: 0 none/lse only, 1 column sums, 2 top-1, 3 distance, 4 window, 5 key set,
/// 6 entropy): what each accumulator costs on top of the two passes.
void BM_ProbeOneStat(benchmark::State& state) {
  const int64_t n = state.range(0);
  ProbeInputs in;
  if (!makeInputs(state, n, in)) return;
  ProbeRequest req;
  switch (state.range(1)) {
    case 1: req.columnSums = true; break;
    case 2: req.topK = 1; break;
    case 3: req.distance = true; break;
    case 4: req.window = 10; break;
    case 5: req.keySet = {0, 1, 2, 3, 100, 1000}; break;
    case 6: req.entropy = true; break;
    default: break;
  }
  for (auto _ : state) {
    ProbeResult r = probeAttention(in, req);
    benchmark::DoNotOptimize(r.nKeys);
    if (in.q.is_cuda()) benchmark::DoNotOptimize(in.q.sum().item<double>());
  }
}

/// The materialised path: scores [head, n, n], causal mask, softmax, then the same statistics.
void BM_Materialised(benchmark::State& state) {
  const int64_t n = state.range(0);
  ProbeInputs in;
  if (!makeInputs(state, n, in)) return;
  const ProbeRequest req = benchRequest();
  int64_t peak = 0;
  for (auto _ : state) {
    PeakMeter meter(in.q.is_cuda());
    at::Tensor s = at::matmul(in.q.permute({1, 0, 2}), in.k.permute({1, 2, 0})).mul_(in.scale);  // [head, n, n]
    const at::Tensor pos = at::arange(n, in.q.options().dtype(at::kLong));
    s.masked_fill_(pos.unsqueeze(0) > pos.unsqueeze(1), -std::numeric_limits<double>::infinity());
    at::Tensor pattern = at::softmax(s, -1);  // [head, n, n]
    s.reset();
    ProbeResult r = statsFromPattern(pattern, req);
    benchmark::DoNotOptimize(r.entropy.sum().item<double>());
    peak = std::max(peak, meter.peakBytes());
  }
  state.counters["peak_bytes"] = static_cast<double>(peak);
  state.counters["tokens_per_s"] = benchmark::Counter(static_cast<double>(n), benchmark::Counter::kIsIterationInvariantRate);
}

/// waad-fai's request (each head's summed distance, WAAD window 10, FAI column sums to the end) by algorithm (range 1: 0 Scan,
/// 1 LseFirst, 2 Moments); bf16 q/k on CUDA as a model gives them. Moments is checked against the materialised
/// pattern in ProbeMoments.* / ProbeCuda.*; this measures what it saves.
void BM_ProbeWaadFai(benchmark::State& state) {
  const int64_t n = state.range(0);
  ProbeInputs in;
  if (!makeInputs(state, n, in)) return;
  if (in.q.is_cuda()) {
    in.q = in.q.to(at::kBFloat16);
    in.k = in.k.to(at::kBFloat16);
  }
  ProbeRequest req;
  req.distanceTotal = true;
  req.window = 10;
  req.columnSums = true;
  req.columnCounts = true;
  const ProbeAlgorithm algorithms[] = {ProbeAlgorithm::Scan, ProbeAlgorithm::LseFirst, ProbeAlgorithm::Moments};
  req.algorithm = algorithms[state.range(1)];
  ProbeAlgorithm ran = req.algorithm;
  bool flash = false;
  for (auto _ : state) {
    ProbeResult r = probeAttention(in, req);
    benchmark::DoNotOptimize(r.columnSums.sum().item<double>());  // also synchronises CUDA
    ran = r.algorithm;
    flash = r.flashLse;
  }
  state.counters["ran_algorithm"] = static_cast<double>(static_cast<int>(ran));
  state.counters["flash_lse"] = flash ? 1.0 : 0.0;
}

BENCHMARK(BM_ProbeTiled)->Arg(1024)->Arg(4096)->Arg(16384)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_ProbeOneStat)->ArgsProduct({{4096}, {0, 1, 2, 3, 4, 5, 6}})->Unit(benchmark::kMillisecond);
BENCHMARK(BM_Materialised)->Arg(1024)->Arg(4096)->Arg(16384)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_ProbeWaadFai)
    ->ArgsProduct({wantCuda() ? std::vector<int64_t>{8192, 32768, 131072} : std::vector<int64_t>{2048, 8192}, {0, 1, 2}})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

}  // namespace

BENCHMARK_MAIN();
