// Fuzz harness: an HDF5 activation cache (.h5). Writes the bytes to a scratch file, opens it as a
// cache (the isolated check in mechscope-h5check, then signature, schema_version, completeness), lists
// and describes every dataset, reads the provenance, the tokens, the token strings, every numeric dataset
// (whole and a first-row slice) and every scalar string. A crash in the checker is a refusal, not a
// finding: what must never crash is this process.
#include <ATen/ATen.h>

#include "fuzz/fuzz_support.hpp"
#include <cstdio>
#include <cstdlib>

#include "store/cache_reader.hpp"
#include "store/isolation/isolated_check.hpp"

// libhdf5 (uninstrumented, from Debian) allocates what a corrupt header says and handles a failed
// malloc as an error; let huge requests fail as they would in production instead of aborting.
// (Run with -malloc_limit_mb=100000000 too: fuzz/CMakeLists.txt does.)
extern "C" const char* __asan_default_options() { return "allocator_may_return_null=1"; }
// libhdf5 1.10.8 leaks a free-list block when H5Fopen fails on a corrupt root object header (H5G_mkroot →
// H5O_protect): an upstream leak per refused file, not reachable from mechscope code.
extern "C" const char* __lsan_default_suppressions() { return "leak:libhdf5_serial.so\n"; }

namespace {
// How the isolated check judged the inputs: printed when the run ends, for docs/reliability.md.
void printVerdicts() {
  const auto c = mechscope::store::isolation::checkCounts();
  std::fprintf(stderr, "mechscope-h5check verdicts: %lld read without harm, %lld refused, %lld crashed or memory "
                       "errors, %lld timed out\n",
               static_cast<long long>(c.passed), static_cast<long long>(c.refused), static_cast<long long>(c.crashed),
               static_cast<long long>(c.timedOut));
}
}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  // A hang inside the checker is a refusal after this many seconds (a forked checker reads a fuzzed file of
  // <= 64 KiB in a few ms); about 1 % of mutated files make libhdf5 loop, and this bounds what they cost.
  setenv("MECHSCOPE_H5CHECK_TIMEOUT", "0.15", 0);
  std::atexit(printVerdicts);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace mechscope;
  const auto path = fuzz::writeTemp(fuzz::bytes(data, size), "cache.h5");
  fuzz::expectCleanRefusal([&] {
    const auto r = store::CacheReader::open(path);
    (void)r.provenance();
    (void)r.attributes("/");
    (void)r.tokens();
    (void)r.tokenStrings();
    for (const auto& d : r.datasets()) {
      fuzz::expectCleanRefusal([&] {
        if (d.dtype == "string") {
          (void)r.readText(d.path);
          return;
        }
        const at::Tensor t = r.read(d.path);
        if (t.numel() > 0 && t.is_floating_point()) (void)t.to(at::kFloat).sum().item<float>();
        if (!d.shape.empty() && d.shape[0] > 0) (void)r.readSlice(d.path, {store::SliceRange::at(0)});
        (void)r.attributes(d.path);
      });
    }
    (void)r.toActivationCache({"*"});
  });
  return 0;
}
