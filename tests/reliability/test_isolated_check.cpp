// The isolated cache check (issue 12): CacheReader::open reads every cache in mechscope-h5check first, so
// libhdf5 1.10.8's crashes, hangs and memory errors on corrupt files end the checker, not this process.
// Real libhdf5 failures (a known hang) and the checker's refusals are tested end to end; the verdicts the
// parent draws from a crash, a memory error or a hung checker are tested with stand-in servers (shell
// scripts speaking store/isolation/check_protocol.hpp), since which bytes crash libhdf5 is libhdf5's business.
#include <fmt/format.h>
#include <gtest/gtest.h>
#include <hdf5.h>
#include <sys/stat.h>

#include <chrono>
#include <cstdlib>
#include <fstream>
#include <optional>
#include <string>
#include <vector>

#include "core/common/errors.hpp"
#include "store/cache_reader.hpp"
#include "store/detail/h5_basic.hpp"
#include "store/isolation/isolated_check.hpp"
#include "tests/store/h5_test_cache.hpp"
#include "tests/store/store_test_util.hpp"

using namespace mechscope;
using namespace mechscope::store;
using mechscope::store::testing::makeCache;
using mechscope::store::testing::ScratchDir;

namespace {

/// Sets an environment variable for one test and restores it after.
class ScopedEnv {
 public:
  ScopedEnv(const char* name, const std::string& value) : m_name(name) {
    if (const char* old = std::getenv(name)) m_old = old;
    setenv(name, value.c_str(), 1);
  }
  ~ScopedEnv() {
    if (m_old)
      setenv(m_name, m_old->c_str(), 1);
    else
      unsetenv(m_name);
  }
  ScopedEnv(const ScopedEnv&) = delete;
  ScopedEnv& operator=(const ScopedEnv&) = delete;

 private:
  const char* m_name;
  std::optional<std::string> m_old;
};

/// A float32 dataset of `n` values 0, 1, 2, ... at `name` with the creation properties `dcpl`.
void writeFloats(hid_t f, const char* name, hsize_t n, hid_t dcpl = H5P_DEFAULT) {
  std::vector<float> v(n);
  for (hsize_t i = 0; i < n; ++i) v[i] = static_cast<float>(i);
  const hid_t space = H5Screate_simple(1, &n, nullptr);
  const hid_t d = H5Dcreate2(f, name, H5T_IEEE_F32LE, space, H5P_DEFAULT, dcpl, H5P_DEFAULT);
  H5Dwrite(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, v.data());
  H5Dclose(d);
  H5Sclose(space);
}

/// An executable shell script standing in for `mechscope-h5check --serve`: `answer` runs once per request
/// line, with the requested path in $p, and prints the response.
std::string fakeServer(const ScratchDir& dir, const std::string& name, const std::string& answer) {
  const auto path = dir / name;
  std::ofstream(path) << "#!/bin/sh\nwhile IFS=\"$(printf '\\t')\" read -r t p; do\n" << answer << "\ndone\n";
  chmod(path.c_str(), 0755);
  return path.string();
}

/// The InputError message `fn` throws (a test failure when it throws none).
template <class Fn>
std::string inputErrorOf(Fn fn) {
  try {
    fn();
  } catch (const InputError& e) {
    return e.what();
  }
  ADD_FAILURE() << "no InputError";
  return {};
}

std::filesystem::path knownHang() {
  return std::filesystem::path(MECHSCOPE_SOURCE_DIR) / "fuzz/known_upstream/hdf5_cache" /
         "libhdf5-1.10.8-hang-vlen-attribute-global-heap";
}

}  // namespace

TEST(IsolatedCheck, AValidCacheIsReadWithoutHarmAndThenOpened) {
  ScratchDir dir;
  const auto path = dir / "ok.h5";
  makeCache(path, [](hid_t f) { writeFloats(f, "logits_flat", 300000); });  // 1.2 MB: read at its corners only
  const auto before = isolation::checkCounts();
  const auto r = CacheReader::open(path);
  EXPECT_EQ(isolation::checkCounts().passed, before.passed + 1);
  const auto t = r.read("/logits_flat");
  ASSERT_EQ(t.numel(), 300000);
  EXPECT_EQ(t[299999].item<float>(), 299999.0f);
}

TEST(IsolatedCheck, ExternalLinkIsRefused) {
  ScratchDir dir;
  const auto path = dir / "link.h5";
  makeCache(path, [](hid_t f) { H5Lcreate_external("/etc/passwd", "/x", f, "tokens", H5P_DEFAULT, H5P_DEFAULT); });
  const auto before = isolation::checkCounts();
  const auto msg = inputErrorOf([&] { (void)CacheReader::open(path); });
  EXPECT_NE(msg.find(path.string()), std::string::npos) << msg;
  EXPECT_NE(msg.find("'/tokens' is an external link"), std::string::npos) << msg;
  EXPECT_EQ(isolation::checkCounts().refused, before.refused + 1);
}

TEST(IsolatedCheck, DataStoredInAnotherFileIsRefused) {
  ScratchDir dir;
  const auto path = dir / "external.h5";
  std::ofstream(dir / "outside.bin") << std::string(40, 'x');
  makeCache(path, [&](hid_t f) {
    const hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
    H5Pset_external(dcpl, (dir / "outside.bin").c_str(), 0, 40);
    writeFloats(f, "secrets", 10, dcpl);
    H5Pclose(dcpl);
  });
  const auto msg = inputErrorOf([&] { (void)CacheReader::open(path); });
  EXPECT_NE(msg.find("'/secrets' keeps its data in external files"), std::string::npos) << msg;
}

TEST(IsolatedCheck, ALibhdf5HangBecomesARefusalAfterTheTimeLimit) {
  if (!std::filesystem::exists(knownHang())) GTEST_SKIP() << "no " << knownHang();
  ScratchDir dir;
  const auto path = dir / "hang.h5";
  std::filesystem::copy_file(knownHang(), path);
  ScopedEnv timeout("MECHSCOPE_H5CHECK_TIMEOUT", "1");
  const auto start = std::chrono::steady_clock::now();
  const auto msg = inputErrorOf([&] { (void)CacheReader::open(path); });
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  EXPECT_NE(msg.find(path.string()), std::string::npos) << msg;
  EXPECT_NE(msg.find("still reading it after 1 s"), std::string::npos) << msg;
  EXPECT_LT(seconds, 6.0);  // the checker's own alarm ends it; the parent's kill is only the backstop
}

TEST(IsolatedCheck, ACrashedCheckerNamesTheSignal) {
  ScratchDir dir;
  ScopedEnv checker("MECHSCOPE_H5CHECK", fakeServer(dir, "segv.sh", "printf 'signal 11 0\\n'"));
  const auto msg = inputErrorOf([&] { isolation::checkCacheInChildProcess(dir / "any.h5"); });
  EXPECT_NE(msg.find("libhdf5 crashed (SIGSEGV)"), std::string::npos) << msg;
  EXPECT_NE(msg.find("any.h5"), std::string::npos) << msg;
}

TEST(IsolatedCheck, AMemoryErrorCaughtByAddressSanitizerIsNamed) {
  ScratchDir dir;
  ScopedEnv checker("MECHSCOPE_H5CHECK",
                    fakeServer(dir, "asan.sh",
                               "m='==1==WARNING: AddressSanitizer failed to allocate 0x10 bytes\n"
                               "==1==ERROR: AddressSanitizer: heap-buffer-overflow on address 0x6020'\n"
                               "printf 'exit 86 %d\\n%s' \"${#m}\" \"$m\""));
  const auto msg = inputErrorOf([&] { isolation::checkCacheInChildProcess(dir / "any.h5"); });
  EXPECT_NE(msg.find("libhdf5 made a memory error (heap-buffer-overflow)"), std::string::npos) << msg;
}

TEST(IsolatedCheck, AHungCheckerIsKilledByTheParent) {
  ScratchDir dir;
  ScopedEnv checker("MECHSCOPE_H5CHECK", fakeServer(dir, "hang.sh", "exec sleep 60"));  // ignores the time limit
  ScopedEnv timeout("MECHSCOPE_H5CHECK_TIMEOUT", "1");
  const auto start = std::chrono::steady_clock::now();
  const auto msg = inputErrorOf([&] { isolation::checkCacheInChildProcess(dir / "any.h5"); });
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  EXPECT_NE(msg.find("still reading it after 1 s"), std::string::npos) << msg;
  EXPECT_GE(seconds, 5.9);  // 1 s + the 5 s grace the checker gets to end itself
  EXPECT_LT(seconds, 15.0);
}

TEST(IsolatedCheck, ARefusalPassesTheCheckersLastLineOn) {
  ScratchDir dir;
  ScopedEnv checker("MECHSCOPE_H5CHECK",
                    fakeServer(dir, "refuse.sh", "m=\"noise\ncache '$p' is corrupt: test\"; printf 'exit 3 %d\\n%s' \"${#m}\" \"$m\""));
  const auto msg = inputErrorOf([&] { isolation::checkCacheInChildProcess(dir / "any.h5"); });
  EXPECT_EQ(msg, "cache '" + (dir / "any.h5").string() + "' is corrupt: test");
}

TEST(IsolatedCheck, ADeadServerIsRestartedOnce) {
  ScratchDir dir;
  // Answers nothing and exits: the parent starts a second server, which does the same, then gives up.
  ScopedEnv checker("MECHSCOPE_H5CHECK", fakeServer(dir, "dies.sh", "exit 0"));
  try {
    isolation::checkCacheInChildProcess(dir / "any.h5");
    ADD_FAILURE() << "no Error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("stopped answering (twice)"), std::string::npos) << e.what();
  }
}

TEST(IsolatedCheck, OneServerChecksManyFilesAndAnUnchangedFileIsNotReadAgain) {
  ScratchDir dir;
  std::vector<std::filesystem::path> files;
  for (int i = 0; i < 5; ++i) {
    files.push_back(dir / fmt::format("c{}.h5", i));  // not "c" + to_string + ".h5": GCC 12 -O3 false -Wstringop-overflow
    makeCache(files.back(), [&](hid_t f) { writeFloats(f, "x", 10 + i); });
  }
  // Files written within the last 2 s are always read (their times are too coarse to tell versions apart).
  auto before = isolation::checkCounts();
  for (const auto& f : files) (void)CacheReader::open(f);
  auto after = isolation::checkCounts();
  EXPECT_EQ(after.passed, before.passed + 5);
  EXPECT_EQ(after.reused, before.reused);
  // Settled files: the first open reads each, the second reuses that verdict.
  const auto old = std::filesystem::file_time_type::clock::now() - std::chrono::seconds(10);
  for (const auto& f : files) std::filesystem::last_write_time(f, old);
  before = isolation::checkCounts();
  for (int round = 0; round < 2; ++round)
    for (const auto& f : files) (void)CacheReader::open(f);
  after = isolation::checkCounts();
  EXPECT_EQ(after.passed, before.passed + 5);
  EXPECT_EQ(after.reused, before.reused + 5);
  // A rewritten file is a new version: it is read again (a hostile rewrite would be refused then).
  makeCache(files[0], [](hid_t f) {
    H5Lcreate_external("/etc/passwd", "/x", f, "tokens", H5P_DEFAULT, H5P_DEFAULT);
  });
  const auto msg = inputErrorOf([&] { (void)CacheReader::open(files[0]); });
  EXPECT_NE(msg.find("external link"), std::string::npos) << msg;
}

TEST(IsolatedCheck, AMissingCheckerIsAClearError) {
  ScopedEnv checker("MECHSCOPE_H5CHECK", "/nonexistent/mechscope-h5check");
  const auto msg = inputErrorOf([&] { (void)isolation::h5checkExecutable(); });
  EXPECT_NE(msg.find("MECHSCOPE_H5CHECK='/nonexistent/mechscope-h5check' is not an executable file"), std::string::npos)
      << msg;
}

TEST(IsolatedCheck, ABadTimeoutIsAClearError) {
  ScopedEnv timeout("MECHSCOPE_H5CHECK_TIMEOUT", "soon");
  const auto msg = inputErrorOf([&] { isolation::checkCacheInChildProcess("/tmp/x.h5"); });
  EXPECT_NE(msg.find("MECHSCOPE_H5CHECK_TIMEOUT='soon': expected seconds"), std::string::npos) << msg;
}
