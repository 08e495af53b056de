#include "core/common/threads.hpp"

#include <ATen/Parallel.h>
#include <dlfcn.h>
#include <sched.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <mutex>
#include <thread>

#include <fmt/format.h>

namespace mechscope {

namespace {

int positiveEnv(const char* name) {
  const char* v = std::getenv(name);
  if (!v || !*v) return 0;
  char* end = nullptr;
  const long n = std::strtol(v, &end, 10);
  return end && *end == '\0' && n > 0 && n < 4096 ? static_cast<int>(n) : 0;
}

// OpenBLAS (Debian's LibTorch links it through libblas.so.3) keeps its own thread pool that
// at::set_num_threads does not touch; reach it only if it is loaded.
using SetFn = void (*)(int);
using GetFn = int (*)();
SetFn openblasSet() { return reinterpret_cast<SetFn>(dlsym(RTLD_DEFAULT, "openblas_set_num_threads")); }
GetFn openblasGet() { return reinterpret_cast<GetFn>(dlsym(RTLD_DEFAULT, "openblas_get_num_threads")); }

struct State {
  int threads = 1;
  const char* source = "cores";
};

State& state() {
  static State s;
  return s;
}

}  // namespace

int availableCpus() {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof(set), &set) == 0) {
    const int n = CPU_COUNT(&set);
    if (n > 0) return n;
  }
  const unsigned hc = std::thread::hardware_concurrency();
  return hc > 0 ? static_cast<int>(hc) : 1;
}

int spareCpus() { return std::max(0, availableCpus() - at::get_num_threads()); }

int configureThreads() {
  static std::once_flag once;
  std::call_once(once, [] {
    State& s = state();
    int n = positiveEnv("MECHSCOPE_THREADS");
    s.source = "MECHSCOPE_THREADS";
    if (n == 0) {
      n = positiveEnv("OMP_NUM_THREADS");
      s.source = "OMP_NUM_THREADS";
    }
    if (n == 0) {
      n = availableCpus();
      s.source = "cores";
    }
    s.threads = n;
    at::set_num_threads(n);
    // OpenBLAS reads OPENBLAS_NUM_THREADS/OMP_NUM_THREADS itself; an explicit MECHSCOPE_THREADS wins.
    if (SetFn set = openblasSet(); set && (std::getenv("MECHSCOPE_THREADS") || !std::getenv("OPENBLAS_NUM_THREADS"))) set(n);
  });
  return state().threads;
}

void ensurePassiveOpenMpWait(char** argv) {
  if (!argv || !argv[0]) return;
  bool changed = false;
  if (!std::getenv("OMP_WAIT_POLICY") && !std::getenv("GOMP_SPINCOUNT"))
    changed = setenv("OMP_WAIT_POLICY", "PASSIVE", 1) == 0;
#if defined(__GLIBC__)
  // Appended to the user's tunables, never replacing one they set (glibc.malloc.hugetlb=0 stays 0).
  const char* tunables = std::getenv("GLIBC_TUNABLES");
  const std::string have = tunables ? tunables : "";
  if (have.find("glibc.malloc.hugetlb") == std::string::npos) {
    const std::string value = have.empty() ? "glibc.malloc.hugetlb=1" : have + ":glibc.malloc.hugetlb=1";
    changed = setenv("GLIBC_TUNABLES", value.c_str(), 1) == 0 || changed;
  }
#endif
  if (!changed) return;
  execv("/proc/self/exe", argv);  // returns only on failure: carry on as we are
}

std::string threadSummary() {
  const int n = configureThreads();
  const char* wait = std::getenv("OMP_WAIT_POLICY");
  std::string s = fmt::format("intra-op {} ({}: {}), interop {}, OMP_WAIT_POLICY {}", at::get_num_threads(), state().source, n,
                              at::get_num_interop_threads(), wait ? wait : "unset");
  if (GetFn get = openblasGet()) s += fmt::format(", OpenBLAS {}", get());
  if (const char* t = std::getenv("GLIBC_TUNABLES")) s += fmt::format(", GLIBC_TUNABLES {}", t);
  return s;
}

}  // namespace mechscope
