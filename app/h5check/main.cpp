// mechscope-h5check: reads an HDF5 cache the way mechscope's reader would, in a process of its own, so
// that a libhdf5 bug triggered by a corrupt file crashes this process instead of mechscope (see
// store/isolation/isolated_check.hpp). mechscope runs it before opening any cache; it is also usable
// by hand. Exit 0: read without harm; 3: a structure mechscope refuses (message on stderr); 4: usage or
// internal error; killed by a signal: libhdf5 crashed or looped (SIGALRM after --timeout seconds).
#include <sys/resource.h>
#include <sys/time.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <string>

#include "app/h5check/serve.hpp"
#include "core/common/errors.hpp"
#include "store/isolation/isolated_check.hpp"
#include "store/isolation/structure_walk.hpp"

#if defined(__SANITIZE_ADDRESS__)
#define MECHSCOPE_H5CHECK_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define MECHSCOPE_H5CHECK_ASAN 1
#endif
#endif

#ifdef MECHSCOPE_H5CHECK_ASAN
// AddressSanitizer here is a detector, not a debugging aid: libhdf5 (uninstrumented) is checked at every
// memcpy/memmove/strlen it calls, so an overflow on a corrupt file ends this process with exit 86 instead of
// passing silently. Huge allocations a corrupt header asks for fail softly as they do without ASan; libhdf5's
// upstream leaks on refused files are not findings; only the kind of error is reported, unsymbolized (running
// llvm-symbolizer costs more than the check). (The parent removes ASAN_OPTIONS from our environment.)
// A single allocation over 1 GiB is reported (allocation-size-too-big, exit 86) instead of failing softly:
// libhdf5 asks for such sizes only when a corrupt header claims them, and a soft failure here would let
// mechscope repeat the request in-process, where it may succeed and be filled (a fuzzed 16 KB file made
// libhdf5 allocate and fill 14 GB for one vlen attribute).
extern "C" const char* __asan_default_options() {
  return "detect_leaks=0:allocator_may_return_null=0:max_allocation_size_mb=1024:exitcode=86:"
         "handle_abort=1:abort_on_error=0:print_summary=1:malloc_context_size=2:quarantine_size_mb=16:symbolize=0";
}

extern "C" int __sanitizer_install_malloc_and_free_hooks(void (*onMalloc)(const volatile void*, size_t),
                                                         void (*onFree)(const volatile void*));
extern "C" size_t __sanitizer_get_current_allocated_bytes();

namespace {
// Many smaller allocations can add up too: past 2 GiB live, the check stops with exit 86 and says so.
constexpr size_t kHeapBudget = size_t{2} << 30;
void checkHeapBudget(const volatile void*, size_t) {
  if (__sanitizer_get_current_allocated_bytes() <= kHeapBudget) return;
  static const char msg[] = "==h5check==ERROR: AddressSanitizer: heap-budget-exceeded: libhdf5 holds more than 2 GiB\n";
  (void)!write(2, msg, sizeof msg - 1);
  _exit(86);
}
void ignoreFree(const volatile void*) {}
}  // namespace
#endif

namespace {

constexpr const char* kUsage =
    "usage: mechscope-h5check [--timeout SECONDS] [--verbose] [--manifest] [--] FILE.h5\n"
    "       mechscope-h5check --serve   (how mechscope runs it: requests on stdin, one forked child per file)\n"
    "Reads every object, attribute and dataset (whole up to 64 KiB, else its first row and corner elements) of\n"
    "FILE the way mechscope's cache reader does, so that libhdf5 crashes on a corrupt file happen here and not\n"
    "in mechscope. Built with AddressSanitizer where the compiler has it, so libhdf5 memory errors that would\n"
    "pass silently are caught too.\n"
    "--manifest prints, on a pass, the attributes and strings read as JSON (what mechscope shows from them).\n"
    "Exit 0: read without harm. 3: refused (external links or storage, unreadable structure), reason on stderr.\n"
    "4: usage or internal error. 86: libhdf5 made a memory error (AddressSanitizer report on stderr).\n"
    "Killed by a signal: libhdf5 crashed, or looped past --timeout seconds (default 60).\n";

// Caps what a hostile file can make this process do: no core files, 4 GiB of address space (under ASan,
// whose shadow memory needs terabytes of address space: the allocation limits above instead), and a CPU limit
// one second past the wall-clock alarm.
void limitSelf(double seconds) {
  rlimit none{0, 0};
  setrlimit(RLIMIT_CORE, &none);
#ifndef MECHSCOPE_H5CHECK_ASAN
  rlimit memory{rlim_t{4} << 30, rlim_t{4} << 30};
  setrlimit(RLIMIT_AS, &memory);
#endif
  const auto whole = static_cast<rlim_t>(seconds);
  rlimit cpu{whole + 1, whole + 2};
  setrlimit(RLIMIT_CPU, &cpu);
  const auto usec = static_cast<long>(seconds * 1e6);
  itimerval alarmAt{{0, 0}, {usec / 1000000, usec % 1000000}};
  setitimer(ITIMER_REAL, &alarmAt, nullptr);  // SIGALRM, default action: end the process
}

// Checks one file within `seconds` (limits first); the exit status the protocol defines.
int checkOne(const std::string& file, double seconds, bool verbose, int manifestFd) {
  using namespace mechscope::store::isolation;
  limitSelf(seconds);
  try {
    const WalkReport r = walkCacheFile(file);
    if (manifestFd >= 0) {
      const std::string json = r.manifest.toJson() + "\n";
      for (std::size_t done = 0; done < json.size();) {
        const ssize_t n = ::write(manifestFd, json.data() + done, json.size() - done);
        if (n <= 0) return kExitError;
        done += static_cast<std::size_t>(n);
      }
    }
    if (verbose)
      std::fprintf(stderr, "%s: %s; %lld objects, %lld attributes, %lld datasets, %llu bytes read\n", file.c_str(),
                   r.opened ? "opened" : "not opened by libhdf5 (the reader refuses it)",
                   static_cast<long long>(r.objects), static_cast<long long>(r.attributes),
                   static_cast<long long>(r.datasets), static_cast<unsigned long long>(r.bytesRead));
    return 0;
  } catch (const mechscope::InputError& e) {
    std::fprintf(stderr, "%s\n", e.what());
    return kExitRefused;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "mechscope-h5check: %s: %s\n", file.c_str(), e.what());
    return kExitError;
  }
}

}  // namespace

int main(int argc, char** argv) {
  using namespace mechscope::store::isolation;
#ifdef MECHSCOPE_H5CHECK_ASAN
  __sanitizer_install_malloc_and_free_hooks(checkHeapBudget, ignoreFree);
#endif
  double seconds = 60;
  bool verbose = false;
  bool manifest = false;
  const char* file = nullptr;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--help" || a == "-h") {
      std::fputs(kUsage, stdout);
      return 0;
    }
    if (a == "--serve" && argc == 2)
      return mechscope::h5check::serveChecks(
          [](const std::string& path, double s, int manifestFd) { return checkOne(path, s, false, manifestFd); });
    if (a == "--timeout" && i + 1 < argc) {
      char* end = nullptr;
      const double v = std::strtod(argv[++i], &end);
      if (*end != '\0' || !(v >= 0.05 && v <= 86400)) {
        std::fprintf(stderr, "mechscope-h5check: --timeout '%s': expected seconds from 0.05 to 86400\n", argv[i]);
        return kExitError;
      }
      seconds = v;
    } else if (a == "--verbose") {
      verbose = true;
    } else if (a == "--manifest") {
      manifest = true;
    } else if (a == "--" && i + 1 < argc && file == nullptr) {
      file = argv[++i];
    } else if (!a.empty() && a[0] != '-' && file == nullptr) {
      file = argv[i];
    } else {
      std::fprintf(stderr, "mechscope-h5check: unexpected argument '%s'\n%s", argv[i], kUsage);
      return kExitError;
    }
  }
  if (file == nullptr) {
    std::fputs(kUsage, stderr);
    return kExitError;
  }
  return checkOne(file, seconds, verbose, manifest ? 1 : -1);
}
