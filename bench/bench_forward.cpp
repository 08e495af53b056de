// CPU forward and caching throughput (issue 11), every figure a ratio measured in this run:
//  1. achieved FLOP/s of the forward (matmul FLOPs counted analytically: Q/K/V/O projections, causal
//     attention q·kᵀ and A·v, MLP, unembedding) as a fraction of LibTorch's own fp32 matmul rate on
//     the forward's GEMM shapes (at::linear / at::bmm on fresh contiguous operands, timed here);
//  2. forward with every hook streamed to an HDF5 cache (as `mechscope-cli run --hooks '*' --cache`)
//     against the bare forward, once per --cache-variants entry (sync: fp32 on the forward's thread;
//     async: fp32 on the background writer, as `run`; fp16/bf16: that storage dtype, background writer;
//     fp16sync; a "-buffered" suffix, e.g. async-buffered, writes through libhdf5's default driver and the
//     page cache instead of the store's O_DIRECT driver; a "-tiles" suffix leaves out the masked tiles of the
//     attention patterns and scores, `run --cache-masked-tiles`; "-logitcopy" writes /logits from a copy, their bytes twice, as before /logits became a link;
//     "-hookedmaps" forms the attention maps in the forward, hooked (the default forms them beside it:
//     ForwardOptions::onDeferredMaps); "-serial" writes one O_DIRECT chunk at a time (the default: CacheOptions::directWriteThreads at once);
//     "-densemaps" stores the maps formed beside the forward in row bands (the default: masked tiles cut on the maps' thread,
//     CacheOptions::maskedTilesBesideForward); "-wholelogits" writes unembed.hook_logits after the forward instead of streaming its rows while the unembedding
//     runs, as before ForwardOptions::onLogitRows), with the time the forward waited for the queue and the writer's busy time; plus the
//     forward with every hook active but nothing written, before and after a writer set its heap policy;
//  3. for GPT-2 models, an eager PyTorch forward of the same weights and tokens
//     (scripts/dev/eager_gpt2_forward.py under /usr/bin/python3), run between two batches of ours.
// Synth folders are written once under --dir and reused.
//   ./build/bench/bench_forward [--models gpt2-small,qwen3-0.6b] [--tokens 1024] [--reps 3] [--dir DIR]
//                               [--cache-dir DIR] [--no-cache] [--no-eager] [--python /usr/bin/python3]
//                               [--cache-variants sync,async,fp16[,fp16sync,bf16,async-buffered,...]]
//                               [--queue-mib 256] [--rounds N] [--read-subsets no-maps,maps,no-result,result]
// --rounds N adds N interleaved rounds (bare forward, every hook read, each cache variant, once each) and
// reports every case's ratio to the bare forward of its own round: min, median and max over the rounds.
// On a machine shared with other jobs this compares runs seconds apart instead of blocks minutes apart.
// --read-subsets adds, to each round, forwards that read only part of the hooks (see subsetHooks).
#include <ATen/ATen.h>
#include <sys/resource.h>
#include <torch/version.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "core/common/threads.hpp"
#include "core/model/hooked_transformer.hpp"
#include "core/synth/synth_model.hpp"
#ifdef MECHSCOPE_WITH_HDF5
#include "store/cache_writer.hpp"
#include "store/detail/direct_vfd.hpp"
#include "store/forward_streaming.hpp"
#include "store/recycling_allocator.hpp"
#endif

namespace {

using namespace mechscope;
namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

struct Args {
  std::vector<std::string> models{"gpt2-small", "qwen3-0.6b"};
  int64_t tokens = 1024;
  int reps = 3;
  fs::path dir = fs::temp_directory_path() / "mechscope_bench_forward";
  fs::path cacheDir;  // where the HDF5 cache goes (default: dir)
  bool cache = true;
  std::vector<std::string> cacheVariants{"sync", "async", "fp16"};
  int64_t queueBytes = int64_t{256} << 20;  // the background writer's bound (as `run`'s default)
  bool eager = true;
  std::string python = "/usr/bin/python3";
  int rounds = 0;  // > 0: interleaved rounds of bare, every-hook and each cache variant once (see benchModel)
  std::vector<std::string> readSubsets;  // --read-subsets: hook subsets read in the rounds (see subsetHooks)
};

double seconds(Clock::time_point a, Clock::time_point b) { return std::chrono::duration<double>(b - a).count(); }

/// The recycling CPU allocator's reuse since `before` (blocks ≥ 1 MiB): fresh ones are zero-filled pages.
std::string recyclingNote(const store::RecyclingStats& before) {
  const auto now = store::recyclingStats();
  if (now.capBytes == 0) return "";
  return fmt::format(" [recycled blocks ≥ 1 MiB: {} reused, {} fresh, cap {} MiB]", now.reused - before.reused,
                     now.fresh - before.fresh, now.capBytes >> 20);
}

std::string loadAverage() {
  std::ifstream in("/proc/loadavg");
  std::string a, b, c;
  in >> a >> b >> c;
  return a + " " + b + " " + c;
}

/// Runs `fn` `reps` times; returns the sorted wall times.
/// User + system CPU seconds of the whole process so far (every thread, the background writer's too).
double processCpuSeconds() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  const auto sec = [](const timeval& tv) { return static_cast<double>(tv.tv_sec) + 1e-6 * static_cast<double>(tv.tv_usec); };
  return sec(u.ru_utime) + sec(u.ru_stime);
}

/// The least process CPU seconds of one run in the last timeRuns call: a load-independent measure of the
/// work, next to wall time that other processes on this machine move by ±15 points.
double g_lastMinCpuS = 0;

std::vector<double> timeRuns(int reps, const std::function<void()>& fn) {
  std::vector<double> t;
  g_lastMinCpuS = 1e300;
  for (int i = 0; i < reps; ++i) {
    const double c = processCpuSeconds();
    const auto a = Clock::now();
    fn();
    t.push_back(seconds(a, Clock::now()));
    g_lastMinCpuS = std::min(g_lastMinCpuS, processCpuSeconds() - c);
  }
  std::sort(t.begin(), t.end());
  return t;
}

double median(const std::vector<double>& v) { return v[v.size() / 2]; }

/// One GEMM shape of the forward: `count` × ([m, k] · [k, n]) in `batch` independent products.
struct Gemm {
  std::string what;
  int64_t batch, m, k, n;
  double count;  // occurrences per forward
  [[nodiscard]] double flops() const { return 2.0 * static_cast<double>(batch * m * k * n); }
};

/// The matmuls of one forward over `T` tokens (attention at full T×T: the shapes the reference times).
std::vector<Gemm> forwardGemms(const ModelConfig& c, int64_t T) {
  const int64_t d = c.dModel, q = int64_t{c.nHeads} * c.dHead, kv = int64_t{c.nKvHeads} * c.dHead;
  const double L = c.nLayers;
  std::vector<Gemm> g{{"q proj", 1, T, d, q, L},
                      {"k+v proj", 1, T, d, kv, 2 * L},
                      {"o proj", 1, T, q, d, L},
                      {"mlp in", 1, T, d, c.dMlp, (c.gatedMlp ? 2 : 1) * L},
                      {"mlp out", 1, T, c.dMlp, d, L},
                      {"attn q·kᵀ", c.nHeads, T, c.dHead, T, L},
                      {"attn A·v", c.nHeads, T, T, c.dHead, L},
                      {"unembed", 1, T, d, c.dVocab, 1}};
  return g;
}

/// Useful matmul FLOPs of one forward: attention counted causally (T(T+1)/2 query-key pairs).
double usefulFlops(const ModelConfig& c, int64_t T) {
  double f = 0;
  for (const Gemm& g : forwardGemms(c, T)) {
    const bool attn = g.what.rfind("attn", 0) == 0;
    f += g.count * g.flops() * (attn ? (static_cast<double>(T) + 1) / (2.0 * static_cast<double>(T)) : 1.0);
  }
  return f;
}

/// LibTorch's fp32 rate on the forward's own shapes: each shape timed alone (best of 3 after a
/// warm-up) on fresh contiguous operands; FLOP-weighted over one forward.
double referenceRate(const ModelConfig& c, int64_t T, std::string* detail) {
  double flops = 0, time = 0;
  std::ostringstream os;
  for (const Gemm& g : forwardGemms(c, T)) {
    std::function<void()> fn;
    at::Tensor a, b;
    if (g.batch == 1) {
      a = at::randn({g.m, g.k});
      b = at::randn({g.n, g.k});  // Linear layout [out, in]
      fn = [&] { (void)at::linear(a, b); };
    } else {
      a = at::randn({g.batch, g.m, g.k});
      b = at::randn({g.batch, g.k, g.n});
      fn = [&] { (void)at::bmm(a, b); };
    }
    fn();
    const double t = timeRuns(3, fn).front();
    flops += g.count * g.flops();
    time += g.count * t;
    os << fmt::format("    {:<12} [{}×]{}×{}×{}  {:6.1f} GFLOP/s\n", g.what, g.batch, g.m, g.k, g.n, g.flops() / t / 1e9);
  }
  if (detail) *detail = os.str();
  return flops / time;
}

at::Tensor benchTokens(int64_t n, int64_t vocab) {
  at::Tensor t = at::empty({1, n}, at::kLong);
  auto* p = t.data_ptr<int64_t>();
  for (int64_t i = 0; i < n; ++i) p[i] = (i * 7919 + 13) % vocab;  // as scripts/dev/eager_gpt2_forward.py
  return t;
}

fs::path synthFolder(const Args& a, const std::string& preset) {
  const std::string family = preset.rfind("gpt2", 0) == 0 ? "gpt2" : preset.rfind("qwen3", 0) == 0 ? "qwen3" : "llama";
  const fs::path dir = a.dir / preset;
  if (!fs::exists(dir / "config.json") || !fs::exists(dir / "model.safetensors")) {
    std::cout << fmt::format("writing synth {} {} → {}\n", family, preset, dir.string()) << std::flush;
    synth::writeSynthFolder(dir, family, preset, 1, "fp32");
  }
  return dir;
}

struct Eager {
  bool ok = false;
  double minS = 0, medianS = 0;
  int threads = 0;
  std::vector<double> logits;
  std::string error;
};

Eager runEager(const Args& a, const fs::path& folder) {
  Eager e;
  const fs::path script = fs::path(MECHSCOPE_SOURCE_DIR) / "scripts/dev/eager_gpt2_forward.py";
  const std::string cmd = fmt::format("'{}' '{}' '{}' --tokens {} --reps {} --threads {} 2>&1", a.python, script.string(),
                                      folder.string(), a.tokens, a.reps, configureThreads());
  FILE* p = popen(cmd.c_str(), "r");
  if (!p) {
    e.error = "popen failed";
    return e;
  }
  std::string out;
  char buf[4096];
  while (fgets(buf, sizeof buf, p)) out += buf;
  const int rc = pclose(p);
  const auto brace = out.rfind("\n{");
  const std::string line = out.substr(brace == std::string::npos ? 0 : brace + 1);
  try {
    if (rc != 0) throw std::runtime_error("exit status " + std::to_string(rc));
    const auto j = nlohmann::json::parse(line);
    e.minS = j.at("min_s").get<double>();
    e.medianS = j.at("median_s").get<double>();
    e.threads = j.at("threads").get<int>();
    e.logits = j.at("logits_last_head").get<std::vector<double>>();
    e.ok = true;
  } catch (const std::exception& ex) {
    e.error = fmt::format("{}: {}", ex.what(), out.substr(0, 400));
  }
  return e;
}

#ifdef MECHSCOPE_WITH_HDF5
/// The writer options of a --cache-variants entry; `sync` tells whether it writes on the forward's thread.
store::CacheOptions variantOptions(const std::string& name, int64_t queueBytes, bool* sync = nullptr) {
  store::CacheOptions opts;
  std::string variant = name;
  auto strip = [&](const std::string& suffix) {
    const bool has = variant.size() > suffix.size() &&
                     variant.compare(variant.size() - suffix.size(), suffix.size(), suffix) == 0;
    if (has) variant.resize(variant.size() - suffix.size());
    return has;
  };
  // Suffixes, in any order: -buffered (libhdf5's default driver), -tiles (masked tiles of patterns and scores),
  // -logitcopy (/logits from a copy of the logits: their bytes written twice), -serial (one O_DIRECT chunk write at a
  // time, as before CacheOptions::directWriteThreads), -densemaps (maps formed beside the forward in row bands, as before
  // CacheOptions::maskedTilesBesideForward), -wholelogits and -hookedmaps (see cacheStreaming).
  for (bool more = true; more;) {
    more = false;
    if (strip("-buffered")) opts.directWrites = false, more = true;
    if (strip("-tiles")) opts.skipMaskedTiles = true, more = true;
    if (strip("-logitcopy")) more = true;  // see copiesLogits
    if (strip("-wholelogits")) more = true;  // see cacheStreaming
    if (strip("-serial")) opts.directWriteThreads = 1, more = true;
    if (strip("-hookedmaps")) more = true;  // see cacheStreaming
    if (strip("-densemaps")) opts.maskedTilesBesideForward = false, more = true;
  }
  if (variant.rfind("fp16", 0) == 0) opts.dtype = store::StorageDtype::Float16;
  if (variant.rfind("bf16", 0) == 0) opts.dtype = store::StorageDtype::BFloat16;
  const bool onThread = variant.size() >= 4 && variant.compare(variant.size() - 4, 4, "sync") == 0 && variant != "async";
  opts.backgroundBytes = onThread ? 0 : queueBytes;
  if (sync) *sync = onThread;
  return opts;
}

/// One forward with every hook streamed to `file` (fsynced, committed), as `run --hooks '*' --cache`.
/// The provenance of a benchmark cache of `family` from `folder` (fp32 on the CPU).
store::Provenance benchProvenance(const fs::path& folder, const std::string& family) {
  store::Provenance prov;
  prov.modelFolder = folder.string();
  prov.family = family;
  prov.dtype = "float32";
  prov.device = "cpu";
  prov.commandLine = "bench_forward";
  return prov;
}

/// Whether a --cache-variants entry ends in -logitcopy: /logits written from a copy of the logits, i.e. a second
/// copy of their bytes as before the writer linked /logits to unembed.hook_logits (the copy's memcpy included).
bool copiesLogits(const std::string& variant) { return variant.find("-logitcopy") != std::string::npos; }

/// The hooks and forward options of a cache of every hook into `w`, as `run --hooks '*' --cache`
/// (store::streamForwardInto: logits streamed block by block, attention maps placed by MapsPlacement::Auto), except
/// that a --cache-variants entry ending in -wholelogits writes the logits whole after the forward, and one ending in
/// -hookedmaps forms the maps in the forward, hooked, whatever the spare cores (both as before those changes).
struct CacheStreaming {
  HookSet hooks;
  ForwardOptions fo;
};
CacheStreaming cacheStreaming(store::CacheWriter& w, const HookedTransformer& model, const std::string& variant) {
  CacheStreaming cs;
  const bool hooked = variant.find("-hookedmaps") != std::string::npos;
  store::streamForwardInto(w, {"*"}, model.hookNames(), cs.fo, cs.hooks,
                           hooked ? store::MapsPlacement::InForward : store::MapsPlacement::Auto);
  if (variant.find("-wholelogits") != std::string::npos) cs.fo.onLogitRows = nullptr;
  return cs;
}

void cacheOnce(HookedTransformer& model, const fs::path& folder, const at::Tensor& tokens, const fs::path& file,
               const store::CacheOptions& opts, const std::string& variant) {
  store::CacheWriter w(file, benchProvenance(folder, model.config().modelType), opts);
  const CacheStreaming cs = cacheStreaming(w, model, variant);
  const bool copyLogits = copiesLogits(variant);
  ForwardResult r = model.forward(tokens, cs.fo, &cs.hooks);
  w.writeLogits(copyLogits ? r.logits.clone() : r.logits);
  w.writeTokens(tokens);
  w.setAttribute("/", "attention_path", r.attentionPath);
  w.commit();
}

/// The reading hooks of a --read-subsets entry, over the model's hook names: "no-maps" every hook but the
/// attention maps (hook_pattern, hook_attn_scores), "maps" only those, "no-result" every hook but the per-head
/// outputs (hook_result), "result" only those. Where the every-hook read's cost over the bare forward goes.
HookSet subsetHooks(const HookedTransformer& model, const std::string& subset) {
  auto isMap = [](const std::string& n) { return n.ends_with("hook_pattern") || n.ends_with("hook_attn_scores"); };
  auto isResult = [](const std::string& n) { return n.ends_with("attn.hook_result"); };
  std::function<bool(const std::string&)> keep;
  if (subset == "no-maps") keep = [&](const std::string& n) { return !isMap(n); };
  else if (subset == "maps") keep = isMap;
  else if (subset == "no-result") keep = [&](const std::string& n) { return !isResult(n); };
  else if (subset == "result") keep = isResult;
  else throw std::runtime_error("--read-subsets: unknown subset '" + subset + "' (no-maps, maps, no-result, result)");
  HookSet hooks;
  for (const std::string& n : model.hookNames())
    if (keep(n)) hooks.add(n, [](const at::Tensor&, const HookContext&) -> std::optional<at::Tensor> { return std::nullopt; });
  return hooks;
}

/// --rounds: each round times the bare forward, the every-hook forward, each --read-subsets entry and every
/// cache variant once; each case's ratio is to the bare forward of its own round.
void interleavedRounds(const Args& a, HookedTransformer& model, const fs::path& folder, const at::Tensor& tokens,
                       const fs::path& file) {
  HookSet readAll;
  readAll.add("*", [](const at::Tensor&, const HookContext&) -> std::optional<at::Tensor> { return std::nullopt; });
  std::vector<std::string> names{"bare", "every hook read"};
  std::vector<std::function<void()>> runs{[&] { (void)model.forward(tokens); },
                                          [&] { (void)model.forward(tokens, {}, &readAll); }};
  std::vector<HookSet> subsets;
  subsets.reserve(a.readSubsets.size());
  for (const std::string& s : a.readSubsets) {
    subsets.push_back(subsetHooks(model, s));
    names.push_back("read " + s);
    runs.emplace_back([&, i = subsets.size() - 1] { (void)model.forward(tokens, {}, &subsets[i]); });
  }
  for (const std::string& v : a.cacheVariants) {
    names.push_back("cache " + v);
    runs.emplace_back([&, opts = variantOptions(v, a.queueBytes), v] {
      cacheOnce(model, folder, tokens, file, opts, v);
    });
  }
  std::vector<std::vector<double>> wall(names.size()), ratio(names.size()), cpu(names.size());
  for (int r = 0; r < a.rounds; ++r) {
    for (std::size_t k = 0; k < runs.size(); ++k) {
      wall[k].push_back(timeRuns(1, runs[k]).front());
      cpu[k].push_back(g_lastMinCpuS);
      fs::remove(file);  // untimed: the next variant's .partial must not need room for two caches (9.9 GB each for qwen3)
    }
    for (std::size_t k = 0; k < runs.size(); ++k) ratio[k].push_back(wall[k].back() / wall[0].back());
  }
  fs::remove(file);
  std::cout << fmt::format("interleaved rounds: {} (each case once per round; ratio = case ÷ that round's bare "
                           "forward), load average now {}\n",
                           a.rounds, loadAverage());
  const double bareMin = *std::min_element(wall[0].begin(), wall[0].end());
  const double bareCpu = *std::min_element(cpu[0].begin(), cpu[0].end());
  for (std::size_t k = 0; k < runs.size(); ++k) {
    std::vector<double> q = ratio[k];
    std::sort(q.begin(), q.end());
    const double m = *std::min_element(wall[k].begin(), wall[k].end());
    const double c = *std::min_element(cpu[k].begin(), cpu[k].end());
    std::cout << fmt::format("  {:<28} min {:.3f} s ({:+.1f} % vs min bare); per-round ratio min {:+.1f} %, median "
                             "{:+.1f} %, max {:+.1f} %; CPU min {:.3f} s ({:+.1f} %)\n",
                             names[k], m, 100.0 * (m / bareMin - 1), 100.0 * (q.front() - 1),
                             100.0 * (q[q.size() / 2] - 1), 100.0 * (q.back() - 1), c, 100.0 * (c / bareCpu - 1));
  }
}
#endif

void benchModel(const Args& a, const std::string& preset) {
  const fs::path folder = synthFolder(a, preset);
  auto model = HookedTransformer::load(folder);
  const ModelConfig& c = model->config();
  const at::Tensor tokens = benchTokens(a.tokens, c.dVocab);
  const double flops = usefulFlops(c, a.tokens);
  std::cout << fmt::format("\n== {} ({} layers, d_model {}, {} q / {} kv heads, d_mlp {}, vocab {}), {} tokens, {:.1f} GFLOP "
                           "useful matmul work\n",
                           preset, c.nLayers, c.dModel, c.nHeads, c.nKvHeads, c.dMlp, c.dVocab, a.tokens, flops / 1e9);
  std::cout << "load average at start: " << loadAverage() << "\n";

  ForwardResult r;
  auto bare = [&] { r = model->forward(tokens); };
  bare();  // warm-up
  std::vector<double> ours = timeRuns(a.reps, bare);
  double bareCpu = g_lastMinCpuS;
  const std::string path = r.attentionPath;

  std::string detail;
  const double ref = referenceRate(c, a.tokens, &detail);
  const std::vector<double> ours2 = timeRuns(a.reps, bare);
  bareCpu = std::min(bareCpu, g_lastMinCpuS);
  ours.insert(ours.end(), ours2.begin(), ours2.end());
  std::sort(ours.begin(), ours.end());
  const double achieved = flops / ours.front();
  std::cout << fmt::format("forward (bare, attention path {}): min {:.3f} s, median {:.3f} s over {} runs; CPU min {:.3f} s\n",
                           path, ours.front(), median(ours), ours.size(), bareCpu);
  const auto cpuNote = [&] {
    return fmt::format(" [CPU min {:.3f} s = {:+.1f} % over bare's {:.3f} s]", g_lastMinCpuS,
                       100.0 * (g_lastMinCpuS / bareCpu - 1), bareCpu);
  };
  std::cout << "LibTorch fp32 matmul rate on the forward's shapes:\n" << detail;
  std::cout << fmt::format("  FLOP-weighted reference: {:.1f} GFLOP/s\n", ref / 1e9);
  std::cout << fmt::format("achieved: {:.1f} GFLOP/s = {:.1f} % of the reference (target ≥ 60 %)\n", achieved / 1e9,
                           100.0 * achieved / ref);

  // ---- every hook active, nothing written: the cost of the explicit attention path and hook calls ----
  HookSet readAll;
  readAll.add("*", [](const at::Tensor&, const HookContext&) -> std::optional<at::Tensor> { return std::nullopt; });
  const std::vector<double> hooked = timeRuns(std::max(1, a.reps - 1), [&] { (void)model->forward(tokens, {}, &readAll); });
  std::cout << fmt::format("forward with every hook read (nothing stored): min {:.3f} s = {:+.1f} % over bare{}\n", hooked.front(),
                           100.0 * (hooked.front() / ours.front() - 1), cpuNote());

  if (a.eager && c.modelType == "gpt2") {
    const Eager e = runEager(a, folder);
    const std::vector<double> ours3 = timeRuns(a.reps, bare);
    if (!e.ok) {
      std::cout << "eager PyTorch peer: not run (" << e.error << ")\n";
    } else {
      double diff = 0;
      const at::Tensor last = r.logits[0][a.tokens - 1];
      for (std::size_t i = 0; i < e.logits.size(); ++i)
        diff = std::max(diff, std::abs(e.logits[i] - last[static_cast<int64_t>(i)].item<double>()));
      const double oursAround = std::min(ours.front(), ours3.front());
      std::cout << fmt::format("eager PyTorch (torch from /usr/bin/python3, {} threads) same weights and tokens: min {:.3f} s, "
                               "median {:.3f} s; mechscope min {:.3f} s (runs before and after it) → eager ÷ mechscope = {:.2f}× "
                               "(target ≥ 1); last-row logits agree to {:.2e}\n",
                               e.threads, e.minS, e.medianS, oursAround, e.minS / oursAround, diff);
    }
  }
#ifdef MECHSCOPE_WITH_HDF5
  if (a.cache) {
    const fs::path file = (a.cacheDir.empty() ? a.dir : a.cacheDir) / fmt::format("cache_{}.h5", preset);
    for (const std::string& name : a.cacheVariants) {
      // "sync": fp32 written on the forward's thread; "async": fp32 on the background writer (as `run`);
      // "fp16" / "bf16": that storage dtype on the background writer; "fp16sync": fp16 on the forward's thread.
      bool sync = false;
      const store::CacheOptions opts = variantOptions(name, a.queueBytes, &sync);
      const auto before = store::detail::directWriteCounters();
      const auto recycledBefore = store::recyclingStats();
      uintmax_t bytes = 0;
      int64_t peakQueued = 0;
      std::pair<double, double> waitBusy;  // of the fastest run
      double bestTotal = 1e300;
      std::vector<std::pair<double, double>> phases;  // per run: (forward + logits handed over, drain + commit) s
      auto cached = [&] {
        store::CacheWriter w(file, benchProvenance(folder, c.modelType), opts);
        const CacheStreaming cs = cacheStreaming(w, *model, name);
        const auto t0 = Clock::now();
        ForwardResult cr = model->forward(tokens, cs.fo, &cs.hooks);
        w.writeLogits(copiesLogits(name) ? cr.logits.clone() : cr.logits);
        const auto t1 = Clock::now();
        w.writeTokens(tokens);
        w.setAttribute("/", "attention_path", cr.attentionPath);
        peakQueued = w.peakQueuedBytes();
        const auto wb = w.backgroundSeconds();
        w.commit();
        phases.emplace_back(seconds(t0, t1), seconds(t1, Clock::now()));
        const double total = phases.back().first + phases.back().second;
        if (total < bestTotal) {
          bestTotal = total;
          waitBusy = wb;
        }
        bytes = fs::file_size(file);
      };
      const std::vector<double> withCache = timeRuns(std::max(1, a.reps - 1), cached);
      const std::string cpu = cpuNote();
      fs::remove(file);
      const auto after = store::detail::directWriteCounters();
      const double gb = 1e9;
      const auto fastest = *std::min_element(phases.begin(), phases.end(), [](const auto& x, const auto& y) {
        return x.first + x.second < y.first + y.second;
      });
      std::cout << fmt::format("forward + every hook streamed to HDF5 [{}: {}, {}] ({:.2f} GB, fsynced, in {}): min {:.3f} s = "
                               "{:+.1f} % over bare (target ≤ +25 %){}{}{}\n",
                               name, store::storageDtypeName(opts.dtype),
                               sync ? "on the forward's thread" : fmt::format("background queue ≤ {} MiB", a.queueBytes >> 20),
                               static_cast<double>(bytes) / 1e9, file.parent_path().string(), withCache.front(),
                               100.0 * (withCache.front() / ours.front() - 1),
                               fmt::format("; forward {:.3f} s + rest of the writes and commit {:.3f} s{}", fastest.first,
                                           fastest.second,
                                           sync ? "" : fmt::format(", peak queued {} MiB, forward waited {:.3f} s for the "
                                                                   "queue, writer thread busy {:.3f} s",
                                                                   peakQueued >> 20, waitBusy.first, waitBusy.second)),
                               fmt::format("; raw data written O_DIRECT {:.2f} GB (through the copy buffer {:.2f} GB), "
                                           "buffered {:.2f} GB over all runs",
                                           static_cast<double>(after.directBytes - before.directBytes) / gb,
                                           static_cast<double>(after.bouncedBytes - before.bouncedBytes) / gb,
                                           static_cast<double>(after.bufferedBytes - before.bufferedBytes) / gb),
                               cpu + recyclingNote(recycledBefore));
    }
    // The writer pins glibc's mmap threshold at 1 MiB and installs the recycling allocator for the rest of the
    // process (store/heap_policy.hpp): large tensors are then recycled blocks or fresh, zero-filled pages. The bare
    // forward again shows what that costs, with the allocator's counts.
    const auto recycledBefore = store::recyclingStats();
    const std::vector<double> after = timeRuns(std::max(1, a.reps - 1), bare);
    std::cout << fmt::format("bare forward after the cache writer set the 1 MiB mmap threshold: min {:.3f} s = {:+.1f} %{}\n",
                             after.front(), 100.0 * (after.front() / ours.front() - 1), cpuNote() + recyclingNote(recycledBefore));
    const std::vector<double> hookedAfter =
        timeRuns(std::max(1, a.reps - 1), [&] { (void)model->forward(tokens, {}, &readAll); });
    std::cout << fmt::format("every hook read (nothing stored) after the 1 MiB mmap threshold: min {:.3f} s = {:+.1f} % over "
                             "bare{}\n",
                             hookedAfter.front(), 100.0 * (hookedAfter.front() / ours.front() - 1), cpuNote());
    if (a.rounds > 0) interleavedRounds(a, *model, folder, tokens, file);
  }
#endif

  std::cout << "load average at end: " << loadAverage() << "\n";
}

Args parse(int argc, char** argv) {
  Args a;
  for (int i = 1; i < argc; ++i) {
    const std::string s = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) throw std::runtime_error(s + " needs a value");
      return argv[++i];
    };
    if (s == "--models") {
      a.models.clear();
      std::stringstream ss(next());
      for (std::string m; std::getline(ss, m, ',');) a.models.push_back(m);
    } else if (s == "--tokens") {
      a.tokens = std::stoll(next());
    } else if (s == "--reps") {
      a.reps = std::max(1, std::stoi(next()));
    } else if (s == "--dir") {
      a.dir = next();
    } else if (s == "--cache-dir") {
      a.cacheDir = next();
    } else if (s == "--cache-variants") {
      a.cacheVariants.clear();
      std::stringstream ss(next());
      for (std::string m; std::getline(ss, m, ',');) a.cacheVariants.push_back(m);
    } else if (s == "--queue-mib") {
      a.queueBytes = std::stoll(next()) << 20;
    } else if (s == "--no-cache") {
      a.cache = false;
    } else if (s == "--no-eager") {
      a.eager = false;
    } else if (s == "--python") {
      a.python = next();
    } else if (s == "--read-subsets") {
      std::stringstream ss(next());
      for (std::string item; std::getline(ss, item, ',');)
        if (!item.empty()) a.readSubsets.push_back(item);
    } else if (s == "--rounds") {
      a.rounds = std::max(0, std::stoi(next()));
    } else {
      throw std::runtime_error("unknown argument " + s + " (see the comment at the top of bench/bench_forward.cpp)");
    }
  }
  return a;
}

}  // namespace

int main(int argc, char** argv) {
  ensurePassiveOpenMpWait(argv);  // as mechscope-cli; the eager peer inherits the same environment
  try {
    std::cout << std::unitbuf;  // progress shows while a slow, loaded run goes on
    const Args a = parse(argc, argv);
    fs::create_directories(a.dir);
    configureThreads();
    std::cout << "threads: " << threadSummary() << "; LibTorch " << TORCH_VERSION << "\n";
#ifdef MECHSCOPE_WITH_HDF5
    const bool beside = store::resolvedPlacement(store::MapsPlacement::Auto, variantOptions("async", a.queueBytes)) ==
                        store::MapsPlacement::Beside;
    std::cout << fmt::format("spare CPUs {}: a queued cache's attention maps are formed {} (MapsPlacement::Auto; -hookedmaps: in "
                             "it)\n",
                             spareCpus(), beside ? "beside the forward" : "in the forward");
#endif
    for (const auto& m : a.models) benchModel(a, m);
    return 0;
  } catch (const std::exception& e) {
    std::cerr << "bench_forward: " << e.what() << "\n";
    return 1;
  }
}
