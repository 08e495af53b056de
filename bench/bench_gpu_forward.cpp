// GPU forward benchmark (issue 11): bf16 forward of a model folder at N tokens as a fraction of the GEMM
// rate LibTorch reaches on the same device in the same run. Not Google Benchmark: one table, one line of
// JSON at the end (for scripts/device/*). CPU works too (fp32), but the CPU table lives in bench_forward.
//   bench_gpu_forward MODEL_DIR [TOKENS=8192] [DEVICE=cuda] [DTYPE=bf16] [REPEATS=5]
//                     [ANALYSIS=sinks|waad-fai|constraint-attention|retrieval]
// With ANALYSIS, the attention analysis is timed in-process too (warm-up, then best of REPEATS), the
// same way the Hugging Face reference in TARGETS.md is timed.
// bench_gpu_trace is this source with MECHSCOPE_BENCH_KINETO: with MECHSCOPE_BENCH_TRACE=FILE it also runs the analysis
// once more under LibTorch's Kineto profiler (CPU ops, CUDA kernels, the probe's named ranges) and writes FILE, a Chrome
// trace that scripts/device/trace_summary.py sums. A separate target, so that a LibTorch whose profiler API differs
// cannot break the benchmark itself.
// MECHSCOPE_BENCH_OPCOUNT=1 (either target) runs the analysis once more counting the ATen ops it dispatches (bench/op_counter.hpp):
// in all, top-level, per named range, per layer. On a GPU each top-level op costs the host a dispatch.
#include <ATen/ATen.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <algorithm>
#include <exception>
#include <set>
#include <stdexcept>
#include <vector>
#include <string>

#include <fmt/format.h>

#include "analysis/constraint/constraint_attention.hpp"
#include "analysis/retrieval/retrieval.hpp"
#include "analysis/sinks/sinks.hpp"
#include "analysis/waad_fai/waad_fai.hpp"
#include "core/common/device_memory.hpp"
#include "core/common/env.hpp"
#include "core/model/hooked_transformer.hpp"
#include "op_counter.hpp"

#ifdef MECHSCOPE_BENCH_KINETO
#include <torch/csrc/autograd/profiler_kineto.h>
#endif

using namespace mechscope;

namespace {

using Clock = std::chrono::steady_clock;

/// Wait for queued device work so wall time means something (CUDA kernels are asynchronous).
void sync(const at::Tensor& t) { (void)t.sum().item<double>(); }

/// Matmul FLOPs of one forward over n tokens with causal attention (logits of the last position only).
double forwardFlops(const ModelConfig& c, double n) {
  const double d = c.dModel, qd = double(c.nHeads) * c.dHead, kvd = double(c.nKvHeads) * c.dHead;
  const double proj = 2.0 * n * d * (qd + 2 * kvd + qd);                       // q, k, v, o
  const double mlp = 2.0 * n * d * c.dMlp * (c.gatedMlp ? 3.0 : 2.0);         // gate/up/down or in/out
  const double attn = 2.0 * 2.0 * double(c.nHeads) * c.dHead * n * (n + 1) / 2;  // QKᵀ and AV, causal half
  return c.nLayers * (proj + mlp + attn) + 2.0 * d * c.dVocab;
}

/// f() once under the Kineto profiler (CPU ops and, where there is a GPU, its kernels), the trace written to `path`.
template <class F>
void traceOnce(const std::string& path, bool cuda, F&& f) {
#ifdef MECHSCOPE_BENCH_KINETO
  namespace prof = torch::profiler::impl;
  const prof::ProfilerConfig config(prof::ProfilerState::KINETO);
  std::set<prof::ActivityType> activities{prof::ActivityType::CPU};
  if (cuda) activities.insert(prof::ActivityType::CUDA);
  torch::autograd::profiler::prepareProfiler(config, activities);
  torch::autograd::profiler::enableProfiler(config, activities);
  f();
  torch::autograd::profiler::disableProfiler()->save(path);
  std::printf("trace written to %s\n", path.c_str());
#else
  (void)path, (void)cuda, (void)f;
  throw std::runtime_error("MECHSCOPE_BENCH_TRACE needs bench_gpu_trace (this build has no profiler)");
#endif
}

/// Best-of-`repeats` seconds of f() (after one warm-up call).
template <class F>
double bestSeconds(int repeats, F&& f) {
  f();
  double best = 1e30;
  for (int r = 0; r < repeats; ++r) {
    const auto t0 = Clock::now();
    f();
    best = std::min(best, std::chrono::duration<double>(Clock::now() - t0).count());
  }
  return best;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: bench_gpu_forward MODEL_DIR [TOKENS=8192] [DEVICE=cuda] [DTYPE=bf16] [REPEATS=5]\n");
    return 2;
  }
  try {
    const std::string folder = argv[1];
    const int64_t n = argc > 2 ? std::atoll(argv[2]) : 8192;
    const std::string device = argc > 3 ? argv[3] : "cuda";
    const std::string dtype = argc > 4 ? argv[4] : "bf16";
    const int repeats = argc > 5 ? std::atoi(argv[5]) : 5;
    if (device.rfind("cuda", 0) == 0 && !at::hasCUDA()) {
      std::printf("bench_gpu_forward: no CUDA device; skipped\n");
      return 0;
    }
    auto model = HookedTransformer::load(folder, LoadOptions{device, dtype});
    const ModelConfig& c = model->config();
    const auto opts = at::TensorOptions().device(at::Device(device));
    const at::Tensor tokens = at::randint(1, c.dVocab, {1, n}, opts.dtype(at::kLong));  // [1, pos]
    ForwardOptions fo;
    fo.logitsLastOnly = true;
    std::string path;
    resetCudaPeak();
    const double fwd = bestSeconds(repeats, [&] {
      ForwardResult r = model->forward(tokens, fo);
      path = r.attentionPath;
      sync(r.logits);
    });
    const int64_t peak = cudaPeakAllocatedBytes();
    const bool countingOps = envEquals("MECHSCOPE_BENCH_OPCOUNT", "1");
    if (countingOps) {
      std::printf("forward alone, ");
      bench::printOpCounts(bench::countOps([&] { (void)model->forward(tokens, fo); }), c.nLayers, 40);
    }

    // The GEMM rate of this LibTorch on this device: square matmuls in the compute dtype.
    const auto cdt = parseDtype(dtype);
    const int64_t g = opts.device().is_cuda() ? 8192 : 2048;  // a CPU run (op counts, traces) needs no minute-long GEMM
    const at::Tensor a = at::randn({g, g}, opts.dtype(at::kFloat)).to(cdt), b = at::randn({g, g}, opts.dtype(at::kFloat)).to(cdt);
    const double gemm = bestSeconds(repeats, [&] { sync(at::matmul(a, b)); });
    const double gemmRate = 2.0 * g * g * g / gemm;
    const double flops = forwardFlops(c, static_cast<double>(n));
    const double rate = flops / fwd;
    std::printf("model %s (%s, %d layers, d_model %d), %lld tokens, %s %s, attention path %s\n", folder.c_str(),
                c.modelType.c_str(), c.nLayers, c.dModel, static_cast<long long>(n), device.c_str(), dtype.c_str(),
                path.c_str());
    std::printf("forward        %9.4f s  %8.1f TFLOP/s  (%.3g FLOP; peak memory %.2f GiB)\n", fwd, rate / 1e12, flops,
                static_cast<double>(peak) / (1 << 30));
    std::printf("GEMM %lldx%lld  %9.4f s  %8.1f TFLOP/s\n", static_cast<long long>(g), static_cast<long long>(g), gemm,
                gemmRate / 1e12);
    std::printf("forward / GEMM rate: %.1f %%\n", 100.0 * rate / gemmRate);
    const std::string analysisName = argc > 6 ? argv[6] : "";
    double analysisSeconds = 0;
    int64_t analysisPeak = 0;
    if (!analysisName.empty()) {
      const std::vector<std::vector<int64_t>> rows{
          [&] {
            const at::Tensor cpu = tokens[0].cpu();
            return std::vector<int64_t>(cpu.data_ptr<int64_t>(), cpu.data_ptr<int64_t>() + n);
          }()};
      resetCudaPeak();
      const auto runAnalysis = [&] {
        if (analysisName == "sinks") {
          (void)analysis::runSinks(*model, rows, analysis::SinksOptions{});
        } else if (analysisName == "waad-fai") {
          (void)analysis::runWaadFai(*model, rows, analysis::WaadFaiOptions{});
        } else if (analysisName == "constraint-attention") {  // a 40-token constraint, the last 64 rows the answer
          std::vector<int64_t> constraint, answer;
          for (int64_t j = 10; j < std::min<int64_t>(50, n); ++j) constraint.push_back(j);
          for (int64_t i = std::max<int64_t>(0, n - 64); i < n; ++i) answer.push_back(i);
          (void)analysis::runConstraintAttention(*model, rows[0], constraint, answer);
        } else if (analysisName == "retrieval") {  // the prefill and one decoding step of one test, span at 40 % depth
          analysis::RetrievalTest test;
          test.ids = rows[0];
          test.needleStart = n * 2 / 5;
          test.needleEnd = std::min<int64_t>(n, test.needleStart + 12);
          analysis::RetrievalDecode decode;
          decode.maxNewTokens = 1;
          (void)analysis::runRetrievalTest(*model, test, decode);
        } else {
          throw std::runtime_error("unknown analysis " + analysisName + " (sinks, waad-fai, constraint-attention or retrieval)");
        }
      };
      analysisSeconds = bestSeconds(repeats, runAnalysis);
      analysisPeak = cudaPeakAllocatedBytes();
      if (const char* trace = std::getenv("MECHSCOPE_BENCH_TRACE"); trace && *trace)
        traceOnce(trace, device.rfind("cuda", 0) == 0, [&] {
          runAnalysis();
          sync(at::zeros({1}, opts));
        });
      if (countingOps) {
        std::printf("%s, ", analysisName.c_str());
        bench::printOpCounts(bench::countOps(runAnalysis), c.nLayers, 30);
      }
      std::printf("%-14s %9.4f s  (forward + statistics, results on the host; peak memory %.2f GiB)\n",
                  analysisName.c_str(), analysisSeconds, static_cast<double>(analysisPeak) / (1 << 30));
    }
    std::printf("%s\n", fmt::format(R"({{"bench":"gpu_forward","model_type":"{}","tokens":{},"device":"{}","dtype":"{}",)"
                                    R"("forward_s":{:.5f},"forward_tflops":{:.2f},"gemm_tflops":{:.2f},"fraction":{:.4f},)"
                                    R"("peak_bytes":{},"attention_path":"{}","analysis":"{}","analysis_s":{:.5f},"analysis_peak_bytes":{}}})",
                                    c.modelType, n, device, dtype, fwd, rate / 1e12, gemmRate / 1e12, rate / gemmRate, peak,
                                    path, analysisName, analysisSeconds, analysisPeak)
                            .c_str());
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_gpu_forward: %s\n", e.what());
    return 1;
  }
}
