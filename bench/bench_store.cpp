// Streaming cache writes (CacheWriter: chunked datasets, one per hook, .partial + fsync + rename) against a
// raw libhdf5 write of the same bytes (contiguous datasets, one H5Dwrite each, fsync) in the same run.
// Counter `ratio` = store throughput / raw throughput (target ≥ 0.70). Also: one head read alone vs the
// whole pattern. Files go to $MECHSCOPE_BENCH_DIR (default: the temp dir).
// Args of BM_StoreVsRaw: {mode, pos}: mode 0 = fp32, 1 = fp16 storage, 2 = gzip 1 + shuffle (fp32).
#include <benchmark/benchmark.h>

#ifdef MECHSCOPE_WITH_HDF5
#include <ATen/ATen.h>
#include <fcntl.h>
#include <hdf5.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <ctime>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <utility>
#include <vector>

#include "store/cache_reader.hpp"
#include "store/cache_writer.hpp"
#include "store/hdf5_lock.hpp"
#include "store/synthetic_cache.hpp"

using namespace mechscope;
using namespace mechscope::store;

namespace {

std::filesystem::path benchDir() {
  const char* d = std::getenv("MECHSCOPE_BENCH_DIR");
  return d ? std::filesystem::path(d) : std::filesystem::temp_directory_path();
}

/// Every hook of a 4-layer synthetic model (8 heads, d_model 512) at `pos` positions, in storage dtype.
std::vector<std::pair<std::string, at::Tensor>> makeHooks(int64_t pos, StorageDtype dtype) {
  const SyntheticShape shape{4, 1, pos, 8, 512};
  std::vector<std::pair<std::string, at::Tensor>> out;
  std::vector<std::string> names = syntheticPreHooks();
  for (int l = 0; l < shape.nLayers; ++l)
    for (auto& h : syntheticLayerHooks(l)) names.push_back(h);
  for (auto& h : syntheticPostHooks()) names.push_back(h);
  for (const auto& n : names) out.emplace_back(n, toStorage(syntheticActivation(n, shape), dtype));
  return out;
}

void fsyncFile(const std::filesystem::path& p) {
  const int fd = ::open(p.c_str(), O_RDONLY);
  if (fd >= 0) {
    ::fsync(fd);
    ::close(fd);
  }
}

/// The baseline: the same bytes as contiguous datasets, one H5Dwrite each, then close and fsync.
void rawWrite(const std::filesystem::path& path, const std::vector<std::pair<std::string, at::Tensor>>& hooks,
              hid_t fileType, hid_t memType) {
  Hdf5Lock lock;
  const hid_t f = H5Fcreate(path.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
  const hid_t g = H5Gcreate2(f, "activations", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
  for (const auto& [name, t] : hooks) {
    std::vector<hsize_t> dims(t.sizes().begin(), t.sizes().end());
    const hid_t space = H5Screate_simple(static_cast<int>(dims.size()), dims.data(), nullptr);
    const hid_t d = H5Dcreate2(g, name.c_str(), fileType, space, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    H5Dwrite(d, memType, H5S_ALL, H5S_ALL, H5P_DEFAULT, t.data_ptr());
    H5Dclose(d);
    H5Sclose(space);
  }
  H5Gclose(g);
  H5Fclose(f);
  fsyncFile(path);
}

hid_t halfType() {
  Hdf5Lock lock;
  static hid_t t = [] {
    hid_t h = H5Tcopy(H5T_IEEE_F32LE);
    H5Tset_fields(h, 15, 10, 5, 0, 10);
    H5Tset_size(h, 2);
    H5Tset_ebias(h, 15);
    return h;
  }();
  return t;
}

double seconds(std::chrono::steady_clock::time_point a, std::chrono::steady_clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

void BM_StoreVsRaw(benchmark::State& state) {
  const int mode = static_cast<int>(state.range(0));
  const int64_t pos = state.range(1);
  CacheOptions opts;
  opts.dtype = mode == 1 ? StorageDtype::Float16 : StorageDtype::Float32;
  if (mode == 2) {
    opts.gzipLevel = 1;
    opts.shuffle = true;
  }
  const auto hooks = makeHooks(pos, opts.dtype);
  int64_t bytes = 0;
  for (const auto& h : hooks) bytes += h.second.numel() * h.second.element_size();
  const hid_t ftype = mode == 1 ? halfType() : H5T_IEEE_F32LE;
  const hid_t mtype = mode == 1 ? halfType() : H5T_NATIVE_FLOAT;
  const auto dir = benchDir();
  const auto rawPath = dir / "mechscope_bench_raw.h5";
  const auto storePath = dir / "mechscope_bench_store.h5";
  double rawTotal = 0, storeTotal = 0;
  int iter = 0;
  for (auto _ : state) {
    auto runRaw = [&] {
      const auto t0 = std::chrono::steady_clock::now();
      rawWrite(rawPath, hooks, ftype, mtype);
      rawTotal += seconds(t0, std::chrono::steady_clock::now());
    };
    auto runStore = [&] {
      const auto t0 = std::chrono::steady_clock::now();
      CacheWriter w(storePath, Provenance{}, opts);
      for (const auto& [name, t] : hooks) w.writeActivation(name, t);
      w.commit();
      const double s = seconds(t0, std::chrono::steady_clock::now());
      storeTotal += s;
      state.SetIterationTime(s);
    };
    // Alternate the order so neither side always finds a warm page cache.
    if (iter++ % 2 == 0) {
      runRaw();
      runStore();
    } else {
      runStore();
      runRaw();
    }
    std::filesystem::remove(rawPath);
    std::filesystem::remove(storePath);
  }
  const double mib = static_cast<double>(bytes) / (1 << 20);
  state.counters["MiB"] = mib;
  state.counters["store_MiBps"] = mib * iter / storeTotal;
  state.counters["raw_MiBps"] = mib * iter / rawTotal;
  state.counters["ratio"] = rawTotal / storeTotal;  // = store throughput / raw throughput
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) * bytes);
}
BENCHMARK(BM_StoreVsRaw)
    ->ArgNames({"mode", "pos"})
    ->Args({0, 512})
    ->Args({0, 1024})
    ->Args({1, 1024})
    ->Args({2, 512})
    ->UseManualTime()
    ->Unit(benchmark::kMillisecond)
    ->MinTime(1.0);

/// One head of one layer's pattern read alone, against reading the whole pattern.
void BM_ReadOneHead(benchmark::State& state) {
  const bool whole = state.range(0) != 0;
  const int64_t pos = 2048;
  const auto path = benchDir() / "mechscope_bench_read.h5";
  {
    CacheWriter w(path, Provenance{});
    w.writeActivation("blocks.0.attn.hook_pattern", syntheticActivation("blocks.0.attn.hook_pattern",
                                                                        SyntheticShape{1, 1, pos, 8, 512}));
    w.commit();
  }
  const auto r = CacheReader::open(path);
  for (auto _ : state) {
    at::Tensor t = whole ? r.read("blocks.0.attn.hook_pattern")
                         : r.readSlice("blocks.0.attn.hook_pattern", {SliceRange::at(0), SliceRange::at(5)});
    benchmark::DoNotOptimize(t.data_ptr());
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) * (whole ? 8 : 1) * pos * pos * 4);
  std::filesystem::remove(path);
}
BENCHMARK(BM_ReadOneHead)->ArgName("whole")->Arg(0)->Arg(1)->Unit(benchmark::kMillisecond);

/// Twelve causal patterns [1, 12, pos, pos] (a GPT-2 small layer stack's hook_pattern) written on the caller's
/// thread with masked tiles (tiled = 1) or every element in row bands (tiled = 0); fp32 or fp16 (half = 1).
/// Counters: file MiB, and the thread's CPU seconds per cache next to the wall time.
void BM_PatternTiles(benchmark::State& state) {
  const bool tiled = state.range(0) != 0;
  const int64_t pos = state.range(1);
  CacheOptions opts;
  opts.skipMaskedTiles = tiled;
  opts.dtype = state.range(2) != 0 ? StorageDtype::Float16 : StorageDtype::Float32;
  const at::Tensor causal = at::ones({pos, pos}, at::kBool).triu(1);
  std::vector<at::Tensor> patterns;
  for (int l = 0; l < 12; ++l)
    patterns.push_back(at::softmax(at::randn({1, 12, pos, pos}).masked_fill(causal, -INFINITY), -1));
  const auto path = benchDir() / "mechscope_bench_tiles.h5";
  double cpu = 0;
  for (auto _ : state) {
    timespec c0{}, c1{};
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &c0);
    CacheWriter w(path, Provenance{}, opts);
    for (int l = 0; l < 12; ++l) w.writeActivation("blocks." + std::to_string(l) + ".attn.hook_pattern", patterns[l]);
    w.commit();
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &c1);
    cpu += static_cast<double>(c1.tv_sec - c0.tv_sec) + 1e-9 * static_cast<double>(c1.tv_nsec - c0.tv_nsec);
    state.counters["file_MiB"] = static_cast<double>(std::filesystem::file_size(path)) / (1 << 20);
    std::filesystem::remove(path);
  }
  state.counters["cpu_s"] = cpu / static_cast<double>(state.iterations());
}
BENCHMARK(BM_PatternTiles)
    ->ArgNames({"tiled", "pos", "half"})
    ->Args({0, 1024, 0})
    ->Args({1, 1024, 0})
    ->Args({0, 2048, 0})
    ->Args({1, 2048, 0})
    ->Args({0, 1024, 1})
    ->Args({1, 1024, 1})
    ->Unit(benchmark::kMillisecond)
    ->MinTime(2.0);

}  // namespace
#endif  // MECHSCOPE_WITH_HDF5

BENCHMARK_MAIN();
