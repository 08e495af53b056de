// Edge attribution (issue #22): EAP and EAP-IG wall time against exact edge patching, each edge alone, as a
// one-forward-per-edge loop (patchEdges with maxBatchRows = 1: one forward per edge, the group's prompts as
// its batch) and batched (many edges per forward), measured on a sample of edges and extrapolated to every
// edge of the graph. Plain timed main (not Google Benchmark): one run of a few seconds to minutes each.
// Results: docs/benchmarks.md ("Edge attribution (issue #22)").
//   bench_eap MODEL_DIR DATASET.jsonl [cpu|cuda] [fp32|bf16] [sample_edges 24] [steps 30 (0: no attribution)] [batched_rows 256]
// Long inputs (issue #22: attribution at 8K+ tokens without [pos, key] patterns): DATASET "long:N1,N2,…" runs, for each
// length N, EAP and EAP-IG (`steps`) on one prompt pair of N random tokens (corrupted in its middle third) on the
// default attention path, and reports time, peak CUDA memory and what the explicit path's patterns alone would
// keep for the backward (scores + pattern, fp32, every layer: 2 · L · H · N² · 4 bytes). One prompt per pass.
//   bench_eap MODEL_DIR long:8192,16384,32768 cuda bf16 0 5
#include <ATen/ATen.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "analysis/common/datasets.hpp"
#include "analysis/eap/edge_attribution.hpp"
#include "analysis/eap/edge_patching.hpp"
#include "core/common/device_memory.hpp"
#include "core/model/hooked_transformer.hpp"

using namespace mechscope;
using namespace mechscope::analysis;

namespace {

double seconds(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

/// Every `stride`-th edge of the graph (receiver-major), `n` of them: spread over layers and receiver kinds.
std::vector<EdgeRef> sampleEdges(const EdgeGraph& G, int64_t n) {
  std::vector<EdgeRef> all;
  for (int64_t b = 0; b < G.nBackward(); ++b)
    for (int64_t f = 0; f < G.prevForward(b); ++f) all.push_back({f, b});
  std::vector<EdgeRef> out;
  const double stride = static_cast<double>(all.size()) / static_cast<double>(n);
  for (int64_t i = 0; i < n; ++i) out.push_back(all[static_cast<size_t>(static_cast<double>(i) * stride + stride / 2)]);
  return out;
}

/// One prompt pair of `n` random tokens; the corrupted prompt differs in its middle third.
std::vector<PatchGroup> randomPair(const HookedTransformer& m, int64_t n) {
  at::manual_seed(3);
  const int64_t V = m.config().dVocab;
  PatchGroup g;
  g.inputs.clean = at::randint(V, {1, n}, at::kLong);
  g.inputs.corrupt = g.inputs.clean.clone();
  g.inputs.corrupt.narrow(1, n / 3, n / 3).random_(V);
  g.inputs.correct = at::randint(V, {1}, at::kLong);
  g.inputs.incorrect = (g.inputs.correct + 1) % V;
  g.promptIndex = {0};
  g.templateIds = {-1};
  return {g};
}

/// The long-input mode (see the header): `lengths` "8192,16384".
int benchLong(const HookedTransformer& m, const std::string& lengths, int steps) {
  const ModelConfig& c = m.config();
  std::vector<int64_t> ns;
  for (size_t at = 0; at < lengths.size();) {
    const size_t comma = lengths.find(',', at);
    ns.push_back(std::stoll(lengths.substr(at, comma == std::string::npos ? std::string::npos : comma - at)));
    at = comma == std::string::npos ? lengths.size() : comma + 1;
  }
  fmt::print("long inputs: {} layers, {} heads ({} kv), d_model {}, {} edges\n", c.nLayers, c.nHeads, c.nKvHeads, c.dModel,
             edgeGraphOf(c).edgeCount());
  EapParams p;
  p.maxBatchRows = 1;  // one interpolation step per pass: a pass over N tokens is the unit that must fit
  p.steps = std::max(1, steps);
  (void)edgeAttribution(m, randomPair(m, 256), p);  // warm-up
  for (const int64_t n : ns) {
    const auto groups = randomPair(m, n);
    const double patterns = 2.0 * c.nLayers * c.nHeads * static_cast<double>(n) * static_cast<double>(n) * 4.0;
    for (EapMethod method : {EapMethod::Eap, EapMethod::EapIg}) {
      p.method = method;
      resetCudaPeak();
      const auto t0 = std::chrono::steady_clock::now();
      const EapResult r = edgeAttribution(m, groups, p);
      const double t = seconds(t0);
      fmt::print("n {:6d} {:<7} {:8.3f} s  forwards {} backwards {}  LD clean {:.4f} corrupt {:.4f}  peak {:.2f} GiB  "
                 "(explicit patterns alone: {:.1f} GiB)  max|score| {:.4g}\n",
                 n, toString(method), t, r.forwards, r.backwards, r.metricClean, r.metricCorrupt,
                 static_cast<double>(cudaPeakAllocatedBytes()) / (1 << 30), patterns / (1 << 30), r.scores.abs().max().item<double>());
    }
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) try {
  if (argc < 3) {
    std::fprintf(stderr, "usage: bench_eap MODEL_DIR DATASET.jsonl [cpu|cuda] [fp32|bf16] [sample_edges] [steps] [batched_rows]\n");
    return 2;
  }
  const std::string folder = argv[1], data = argv[2];
  const std::string device = argc > 3 ? argv[3] : "cpu", dtype = argc > 4 ? argv[4] : "fp32";
  const int64_t sample = argc > 5 ? std::atoll(argv[5]) : 24;
  const int steps = argc > 6 ? std::atoi(argv[6]) : 30;
  const int64_t batchedRows = argc > 7 ? std::atoll(argv[7]) : 256;
  auto model = HookedTransformer::load(folder, LoadOptions{device, dtype});
  if (data.rfind("long:", 0) == 0) return benchLong(*model, data.substr(5), steps);
  CausalDataset ds = readJsonl(data);
  tokenizeDataset(ds, nullptr, std::nullopt);
  const std::vector<PatchGroup> groups = toPatchGroups(ds);
  int64_t prompts = 0;
  for (const auto& g : groups) prompts += g.inputs.clean.size(0);
  const EdgeGraph G = edgeGraphOf(model->config());
  const int64_t nEdges = G.edgeCount(), nGroups = static_cast<int64_t>(groups.size());
  fmt::print("model {} ({} layers, {} heads, d_model {}), {} {}, {} prompts in {} length groups, {} edges\n", folder,
             model->config().nLayers, model->config().nHeads, model->config().dModel, device, dtype, prompts, nGroups, nEdges);

  EapParams p;
  p.maxBatchRows = 32;
  if (steps > 0) {  // warm-up (first-call allocator / cuBLAS set-up)
    p.method = EapMethod::Eap;
    (void)edgeAttribution(*model, groups, p);
  }
  for (EapMethod m : {EapMethod::Eap, EapMethod::EapIg}) {
    if (steps <= 0) break;  // steps 0: exact patching only (the CLI times the attribution)
    p.method = m;
    p.steps = steps;
    resetCudaPeak();
    const auto t0 = std::chrono::steady_clock::now();
    const EapResult r = edgeAttribution(*model, groups, p);
    const double t = seconds(t0);  // scores are fp64 on the host: the device is done
    fmt::print("{:<7} {:8.3f} s  forwards {} backwards {}  LD clean {:.4f} corrupt {:.4f}  peak {:.2f} GiB\n", toString(m), t,
               r.forwards, r.backwards, r.metricClean, r.metricCorrupt, static_cast<double>(cudaPeakAllocatedBytes()) / (1 << 30));
  }

  const std::vector<EdgeRef> edges = sampleEdges(G, sample);
  (void)patchEdges(*model, groups, {edges.front()}, 1);  // warm-up
  // One forward per edge: maxBatchRows = 1 gives each forward one edge (the group's prompts as its batch);
  // patchEdges adds the clean and corrupted recording forwards once per group.
  auto t0 = std::chrono::steady_clock::now();
  const EdgePatchResult loop = patchEdges(*model, groups, edges, 1);
  (void)loop.effect.sum().item<double>();
  const double tLoop = seconds(t0);
  const double perForward = tLoop / loop.forwards;
  const double loopAll = perForward * static_cast<double>(nEdges * nGroups + 2 * nGroups);
  fmt::print("loop    sample {} edges: {:.3f} s, {} forwards, {:.2f} ms/forward → all {} edges (extrapolated): {:.1f} s ({} forwards)\n",
             sample, tLoop, loop.forwards, perForward * 1e3, nEdges, loopAll, nEdges * nGroups + 2 * nGroups);
  // Batched exact patching: batchedRows rows (edges × prompts) per forward.
  const std::vector<EdgeRef> many = sampleEdges(G, 4 * sample);
  (void)patchEdges(*model, groups, {many.begin(), many.begin() + 4}, batchedRows);
  t0 = std::chrono::steady_clock::now();
  const EdgePatchResult batched = patchEdges(*model, groups, many, batchedRows);
  (void)batched.effect.sum().item<double>();
  const double tBatched = seconds(t0);
  const double batchedAll = tBatched * static_cast<double>(nEdges) / static_cast<double>(many.size());
  fmt::print("batched sample {} edges ({} rows/forward): {:.3f} s, {} forwards → all edges (extrapolated): {:.1f} s\n", many.size(), batchedRows,
             tBatched, batched.forwards, batchedAll);
  double maxDiff = 0;  // the loop and the batched run patch the same first `sample` edges? (sanity: same numbers)
  const EdgePatchResult check = patchEdges(*model, groups, {many.begin(), many.begin() + std::min<size_t>(4, many.size())}, 1);
  const EdgePatchResult checkB = patchEdges(*model, groups, {many.begin(), many.begin() + std::min<size_t>(4, many.size())}, batchedRows);
  maxDiff = (check.effect - checkB.effect).abs().max().item<double>();
  fmt::print("loop vs batched, 4 edges: max |effect difference| {:.3g}\n", maxDiff);
  return 0;
} catch (const std::exception& e) {
  std::fprintf(stderr, "bench_eap: %s\n", e.what());
  return 1;
}
