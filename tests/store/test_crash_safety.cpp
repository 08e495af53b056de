// Crash safety: NAME.h5 appears only on commit; an exception, a cancel or SIGKILL leaves no NAME.h5 and
// an older NAME.h5 byte-identical. Damaged inputs (.partial, truncated, not HDF5, newer schema) are refused
// with a message naming the file.
#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <hdf5.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <fstream>
#include <thread>

#include "core/common/errors.hpp"
#include "store/cache_reader.hpp"
#include "store/cache_writer.hpp"
#include "store/synthetic_cache.hpp"
#include "store_test_util.hpp"

using namespace mechscope;
using namespace mechscope::store;
using mechscope::store::testing::fileBytes;
using mechscope::store::testing::ScratchDir;

namespace {

void expectInputError(const std::filesystem::path& p, const std::string& needle) {
  try {
    (void)CacheReader::open(p);
    FAIL() << "opening " << p << " should fail";
  } catch (const InputError& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find(p.string()), std::string::npos) << "message does not name the file: " << msg;
    EXPECT_NE(msg.find(needle), std::string::npos) << "message lacks '" << needle << "': " << msg;
    EXPECT_EQ(msg.find('\n'), std::string::npos) << "one line expected: " << msg;
  }
}

void writeSmallCache(const std::filesystem::path& p, float value) {
  CacheWriter w(p, Provenance{});
  w.writeActivation("blocks.0.hook_resid_pre", at::full({1, 4, 8}, value));
  w.commit();
}

}  // namespace

TEST(StoreCrashSafety, ExceptionBeforeCommitLeavesOldFileIntact) {
  ScratchDir dir;
  const auto path = dir / "cache.h5";
  writeSmallCache(path, 1.0f);
  const std::string before = fileBytes(path);
  try {
    CacheWriter w(path, Provenance{});
    w.writeActivation("blocks.0.hook_resid_pre", at::full({1, 4, 8}, 2.0f));
    EXPECT_TRUE(std::filesystem::exists(w.partialPath()));
    throw std::runtime_error("simulated failure mid-run");
  } catch (const std::runtime_error&) {
  }
  EXPECT_FALSE(std::filesystem::exists(dir / "cache.h5.partial"));
  EXPECT_EQ(fileBytes(path), before);
  EXPECT_EQ(CacheReader::open(path).read("blocks.0.hook_resid_pre")[0][0][0].item<float>(), 1.0f);
  // A successful commit replaces it.
  writeSmallCache(path, 3.0f);
  EXPECT_EQ(CacheReader::open(path).read("blocks.0.hook_resid_pre")[0][0][0].item<float>(), 3.0f);
}

TEST(StoreCrashSafety, CancelledSyntheticRunLeavesNoFile) {
  ScratchDir dir;
  const auto path = dir / "cancel.h5";
  RunContext ctx;
  int layers = 0;
  EXPECT_THROW(streamSyntheticCache(path, SyntheticShape{6, 1, 8, 2, 8}, {}, &ctx,
                                    [&](int) {
                                      if (++layers == 2) ctx.cancel->cancel();
                                    }),
               Cancelled);
  EXPECT_FALSE(std::filesystem::exists(path));
  EXPECT_FALSE(std::filesystem::exists(dir / "cancel.h5.partial"));
}

TEST(StoreCrashSafety, WriterRefusesBadOutputPaths) {
  ScratchDir dir;
  EXPECT_THROW(CacheWriter(dir / "no_such_dir" / "x.h5", Provenance{}), InputError);
  EXPECT_THROW(CacheWriter(dir.path(), Provenance{}), InputError);
}

// The child half of the SIGKILL test: runs only when the parent sets MECHSCOPE_STORE_KILL_OUT.
TEST(StoreKillChild, WriteSlowlyUntilKilled) {
  const char* out = std::getenv("MECHSCOPE_STORE_KILL_OUT");
  if (!out) GTEST_SKIP() << "helper for StoreCrashSafety.SigkillMidWrite (runs in a child process)";
  const std::filesystem::path path(out);
  streamSyntheticCache(path, SyntheticShape{400, 1, 64, 4, 64}, {}, nullptr, [&](int layer) {
    if (layer == 2) std::ofstream(path.string() + ".ready") << "ready";
    std::this_thread::sleep_for(std::chrono::milliseconds(25));
  });
}

namespace {

/// Starts this test binary as a child running the slow writer into `out`; returns its pid.
pid_t spawnSlowWriter(const std::filesystem::path& out) {
  const std::string env = "MECHSCOPE_STORE_KILL_OUT=" + out.string();
  const pid_t pid = fork();
  if (pid == 0) {
    // Only async-signal-safe work between fork and exec.
    char* const argv[] = {const_cast<char*>("mechscope_tests_store"),
                          const_cast<char*>("--gtest_filter=StoreKillChild.WriteSlowlyUntilKilled"), nullptr};
    char* const envp[] = {const_cast<char*>(env.c_str()), const_cast<char*>("OMP_NUM_THREADS=1"), nullptr};
    execve("/proc/self/exe", argv, envp);
    _exit(127);
  }
  return pid;
}

/// Kills `pid` with SIGKILL once `marker` exists (the child is mid-write); false on timeout or early exit.
bool killWhenReady(pid_t pid, const std::filesystem::path& marker) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(120);
  while (!std::filesystem::exists(marker)) {
    int status = 0;
    if (waitpid(pid, &status, WNOHANG) == pid) return false;  // exited before being killed
    if (std::chrono::steady_clock::now() > deadline) {
      kill(pid, SIGKILL);
      waitpid(pid, &status, 0);
      return false;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(100));  // let it get into the next layers
  kill(pid, SIGKILL);
  int status = 0;
  waitpid(pid, &status, 0);
  return WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL;
}

}  // namespace

TEST(StoreCrashSafety, SigkillMidWrite) {
  ScratchDir dir;
  // 1) No previous file: after SIGKILL there is no NAME.h5, only a .partial that readers refuse.
  {
    const auto path = dir / "fresh.h5";
    const pid_t pid = spawnSlowWriter(path);
    ASSERT_GT(pid, 0);
    ASSERT_TRUE(killWhenReady(pid, dir / "fresh.h5.ready")) << "the child did not start writing or was not killed";
    EXPECT_FALSE(std::filesystem::exists(path));
    ASSERT_TRUE(std::filesystem::exists(dir / "fresh.h5.partial"));
    EXPECT_GT(std::filesystem::file_size(dir / "fresh.h5.partial"), 0u);
    expectInputError(dir / "fresh.h5.partial", ".partial");
    // Renaming the leftover by hand does not make it look complete.
    std::filesystem::copy_file(dir / "fresh.h5.partial", dir / "renamed.h5");
    EXPECT_THROW((void)CacheReader::open(dir / "renamed.h5"), InputError);
    // A new run over the stale .partial succeeds.
    writeSmallCache(path, 5.0f);
    EXPECT_EQ(CacheReader::open(path).read("blocks.0.hook_resid_pre")[0][0][0].item<float>(), 5.0f);
    EXPECT_FALSE(std::filesystem::exists(dir / "fresh.h5.partial"));
  }
  // 2) A previous NAME.h5 is byte-identical after the writer of its replacement is killed.
  {
    const auto path = dir / "old.h5";
    writeSmallCache(path, 7.0f);
    const std::string before = fileBytes(path);
    const pid_t pid = spawnSlowWriter(path);
    ASSERT_GT(pid, 0);
    ASSERT_TRUE(killWhenReady(pid, dir / "old.h5.ready"));
    EXPECT_TRUE(std::filesystem::exists(dir / "old.h5.partial"));
    EXPECT_EQ(fileBytes(path), before);
    EXPECT_EQ(CacheReader::open(path).read("blocks.0.hook_resid_pre")[0][0][0].item<float>(), 7.0f);
  }
}

TEST(StoreBadInput, TruncatedFileIsNamed) {
  ScratchDir dir;
  const auto path = dir / "full.h5";
  streamSyntheticCache(path, SyntheticShape{2, 1, 32, 2, 16});
  const std::string bytes = fileBytes(path);
  ASSERT_GT(bytes.size(), 4096u);
  const auto cut = dir / "truncated.h5";
  std::ofstream(cut, std::ios::binary).write(bytes.data(), static_cast<std::streamsize>(bytes.size() / 2));
  expectInputError(cut, "truncated");
}

TEST(StoreBadInput, NotHdf5MissingAndFolder) {
  ScratchDir dir;
  std::ofstream(dir / "text.h5") << "this is not an HDF5 file\n";
  expectInputError(dir / "text.h5", "not an HDF5 file");
  std::ofstream(dir / "empty.h5");
  expectInputError(dir / "empty.h5", "not an HDF5 file");
  expectInputError(dir / "missing.h5", "no such file");
  std::filesystem::create_directories(dir / "folder.h5");
  expectInputError(dir / "folder.h5", "folder");
}

TEST(StoreBadInput, NewerSchemaIsRefused) {
  ScratchDir dir;
  const auto path = dir / "future.h5";
  {
    CacheWriter w(path, Provenance{});
    w.setAttribute("/", "schema_version", int64_t{2});
    w.commit();
  }
  expectInputError(path, "schema_version 2");
  expectInputError(path, "upgrade mechscope");
}

TEST(StoreBadInput, ForeignHdf5WithoutSchemaIsRefused) {
  ScratchDir dir;
  const auto path = dir / "foreign.h5";
  const hid_t f = H5Fcreate(path.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
  ASSERT_GE(f, 0);
  H5Fclose(f);
  expectInputError(path, "not a mechscope cache");
}
