// `mechscope-cli cache-selftest --out F.h5` (hidden): streams a synthetic model's activations into a cache,
// layer by layer, and prints throughput and peak RSS. Used by tests/cli/cache*.sh to make input files and
// by memory-bounded streaming checks (run under `prlimit --as=...`). Ctrl-C cancels and leaves no file.
#ifdef MECHSCOPE_WITH_HDF5
#include <sys/resource.h>
#include <unistd.h>

#include <cstdio>

#include <chrono>
#include <iostream>
#include <memory>
#include <thread>

#include <fmt/format.h>

#include "app/cli/command.hpp"
#include "store/synthetic_cache.hpp"

namespace mechscope::cli {
namespace {

struct SelftestOptions {
  std::string out;
  store::SyntheticShape shape;
  std::string dtype = "float32";
  int gzip = 0;
  bool shuffle = false;
  int sleepMs = 0;
};

double currentRssMiB() {
  long pages = 0, resident = 0;
  if (FILE* f = std::fopen("/proc/self/statm", "r")) {
    if (std::fscanf(f, "%ld %ld", &pages, &resident) != 2) resident = 0;
    std::fclose(f);
  }
  return static_cast<double>(resident) * static_cast<double>(sysconf(_SC_PAGESIZE)) / (1 << 20);
}

double peakRssMiB() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  return static_cast<double>(ru.ru_maxrss) / 1024.0;  // ru_maxrss is in KiB on Linux
}

void runSelftest(const SelftestOptions& o) {
  store::CacheOptions opts;
  opts.dtype = store::parseStorageDtype(o.dtype, "--dtype");
  opts.gzipLevel = o.gzip;
  opts.shuffle = o.shuffle;
  const double totalMiB =
      static_cast<double>(store::syntheticCacheBytes(o.shape, store::storageElementSize(opts.dtype))) / (1 << 20);
  std::cerr << fmt::format("cache-selftest: {} layers, batch {}, pos {}, heads {}, d_model {}: {:.1f} MiB of activations\n",
                           o.shape.nLayers, o.shape.batch, o.shape.pos, o.shape.heads, o.shape.dModel, totalMiB);
  const auto stats = store::streamSyntheticCache(o.out, o.shape, opts, &processContext(), [&](int layer) {
    if (o.sleepMs > 0) std::this_thread::sleep_for(std::chrono::milliseconds(o.sleepMs));
    std::cerr << fmt::format("  layer {} written (RSS {:.1f} MiB)\n", layer, currentRssMiB());
  });
  std::cout << fmt::format("wrote {}: {} datasets, {:.1f} MiB in {:.2f} s ({:.0f} MiB/s); peak RSS {:.1f} MiB\n", o.out,
                           stats.datasets, static_cast<double>(stats.bytes) / (1 << 20), stats.seconds,
                           static_cast<double>(stats.bytes) / (1 << 20) / std::max(stats.seconds, 1e-9), peakRssMiB());
}

const RegisterCommand reg_cmd_cache_selftest{"cache-selftest", 200, [](CLI::App& root) {
                            auto o = std::make_shared<SelftestOptions>();
                            auto* sub = root.add_subcommand("cache-selftest", "Write a synthetic cache (testing)");
                            sub->group("");  // hidden from --help
                            sub->add_option("--out", o->out, "Output .h5")->required();
                            sub->add_option("--layers", o->shape.nLayers, "Layers (default 2)");
                            sub->add_option("--batch", o->shape.batch, "Batch (default 1)");
                            sub->add_option("--pos", o->shape.pos, "Positions (default 16)");
                            sub->add_option("--heads", o->shape.heads, "Heads (default 4)");
                            sub->add_option("--d-model", o->shape.dModel, "d_model (default 32)");
                            sub->add_option("--dtype", o->dtype, "float32 | float16 | bfloat16");
                            sub->add_option("--gzip", o->gzip, "gzip level 0-9 (default 0)");
                            sub->add_flag("--shuffle", o->shuffle, "Byte shuffle before gzip");
                            sub->add_option("--sleep-ms", o->sleepMs, "Sleep after each layer (kill tests)");
                            sub->callback([o] { runSelftest(*o); });
                          }};

}  // namespace
}  // namespace mechscope::cli
#endif  // MECHSCOPE_WITH_HDF5
