#include "store/isolation/isolated_check.hpp"

#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fmt/format.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <optional>
#include <string>

#include "core/common/errors.hpp"
#include "mechscope/h5check_path.hpp"  // generated: MECHSCOPE_H5CHECK_BUILD_PATH
#include "store/isolation/check_server.hpp"

namespace mechscope::store::isolation {

namespace {

std::atomic<int64_t> g_passed{0}, g_refused{0}, g_crashed{0}, g_timedOut{0}, g_reused{0};

constexpr const char* kCheckerName = "mechscope-h5check";
constexpr int kDefaultTimeoutSeconds = 60;

double timeoutSeconds() {
  const char* env = std::getenv("MECHSCOPE_H5CHECK_TIMEOUT");
  if (env == nullptr || *env == '\0') return kDefaultTimeoutSeconds;
  char* end = nullptr;
  const double v = std::strtod(env, &end);
  if (*end != '\0' || !(v >= 0.05 && v <= 86400))
    throw InputError(fmt::format("MECHSCOPE_H5CHECK_TIMEOUT='{}': expected seconds from 0.05 to 86400", env));
  return v;
}

bool isExecutableFile(const std::filesystem::path& p) {
  std::error_code ec;
  return std::filesystem::is_regular_file(p, ec) && ::access(p.c_str(), X_OK) == 0;
}

// The one checker server of this process; checks from several threads take turns.
std::mutex g_serverMutex;
CheckServer& server() {
  static CheckServer s;
  return s;
}

// Files that passed, by identity and version: the GUI reopens a cache for every head it shows, and a file
// that has not changed since it passed need not be read again. (Guarded by g_serverMutex.)
struct FileVersion {
  dev_t device = 0;
  ino_t inode = 0;
  off_t size = 0;
  int64_t mtimeNs = 0;
  bool operator==(const FileVersion& o) const {  // (C++17: the fuzz tree compiles this file so)
    return device == o.device && inode == o.inode && size == o.size && mtimeNs == o.mtimeNs;
  }
};
struct Passed {
  FileVersion version;
  Manifest manifest;
};
std::map<std::string, Passed>& passedFiles() {
  static std::map<std::string, Passed> m;
  return m;
}
std::optional<FileVersion> versionOf(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return std::nullopt;
  return FileVersion{st.st_dev, st.st_ino, st.st_size, int64_t{st.st_mtim.tv_sec} * 1000000000 + st.st_mtim.tv_nsec};
}

std::string firstLine(const std::string& s) {
  std::string line = s.substr(0, s.find('\n'));
  while (!line.empty() && (line.back() == '\r' || line.back() == ' ')) line.pop_back();
  return line;
}

// The checker prints its verdict last (ASan may have warned about failed huge allocations before it).
std::string lastLine(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == '\r' || s.back() == ' ')) s.pop_back();
  const auto nl = s.rfind('\n');
  return nl == std::string::npos ? s : s.substr(nl + 1);
}

}  // namespace

std::filesystem::path h5checkExecutable() {
  if (const char* env = std::getenv("MECHSCOPE_H5CHECK"); env != nullptr && *env != '\0') {
    if (!isExecutableFile(env))
      throw InputError(fmt::format("MECHSCOPE_H5CHECK='{}' is not an executable file (it must name {})", env,
                                   kCheckerName));
    return env;
  }
  std::error_code ec;
  const auto self = std::filesystem::read_symlink("/proc/self/exe", ec);
  if (!ec) {
    if (const auto beside = self.parent_path() / kCheckerName; isExecutableFile(beside)) return beside;
  }
  if (const std::filesystem::path built = MECHSCOPE_H5CHECK_BUILD_PATH; isExecutableFile(built)) return built;
  throw InputError(fmt::format("{} not found (next to {} or at {}): it checks a cache in a separate process before "
                               "mechscope opens it; build it or set MECHSCOPE_H5CHECK to its path",
                               kCheckerName, ec ? std::string("this program") : self.string(),
                               MECHSCOPE_H5CHECK_BUILD_PATH));
}

Manifest checkCacheInChildProcess(const std::filesystem::path& path) {
  const double seconds = timeoutSeconds();
  const auto exe = h5checkExecutable();
  const std::string name = path.string();
  if (name.find('\n') != std::string::npos)
    throw InputError(fmt::format("cache path '{}' holds a newline: rename the file", name));
  CheckOutcome outcome;
  const auto version = versionOf(name);
  // As git does with racily clean files: file times have coarse (jiffy) resolution, so a version seen within
  // two seconds of its last write could still change without changing its time; such files are not remembered.
  const auto nowNs = std::chrono::duration_cast<std::chrono::nanoseconds>(
                         std::chrono::system_clock::now().time_since_epoch()).count();
  const bool settled = version && version->mtimeNs < nowNs - int64_t{2000000000};
  {
    std::lock_guard<std::mutex> lock(g_serverMutex);
    if (const auto it = passedFiles().find(name); version && it != passedFiles().end() && it->second.version == *version) {
      ++g_reused;
      return it->second.manifest;
    }
    outcome = server().check(exe, name, seconds);
  }
  const std::string& message = outcome.message;
  const bool killedForTime = outcome.killedForTime;
  const bool exited = !outcome.signaled && !killedForTime;
  if (exited && outcome.code == 0) {
    ++g_passed;
    Manifest manifest = Manifest::fromJson(outcome.manifest, name);
    if (settled && versionOf(name) == version) {
      std::lock_guard<std::mutex> lock(g_serverMutex);
      passedFiles()[name] = Passed{*version, manifest};
    }
    return manifest;
  }
  if (exited && outcome.code == kExitRefused) {
    ++g_refused;
    throw InputError(lastLine(message));
  }
  const int sig = outcome.signaled ? outcome.code : 0;
  if (killedForTime || sig == SIGALRM || sig == SIGXCPU) {
    ++g_timedOut;
    throw InputError(fmt::format("cache '{}' is corrupt: libhdf5 was still reading it after {} s in {} (a corrupt "
                                 "structure makes it loop); mechscope refuses to open it (raise "
                                 "MECHSCOPE_H5CHECK_TIMEOUT for a huge trusted cache)",
                                 name, seconds, kCheckerName));
  }
  ++g_crashed;
  if (exited && outcome.code == kExitMemoryError) {
    const auto at = message.find("AddressSanitizer: ");
    std::string kind = at == std::string::npos ? "memory error" : firstLine(message.substr(at + 18));
    if (kind.find("exceeds maximum supported size") != std::string::npos)
      kind = "allocation-size-too-big: one allocation over 1 GiB";
    else if (kind.rfind("heap-budget-exceeded", 0) == 0)
      kind = "heap-budget-exceeded: more than 2 GiB held";
    throw InputError(fmt::format("cache '{}' is corrupt: libhdf5 made a memory error ({}) reading it in {}, a "
                                 "separate process; mechscope refuses to open it",
                                 name, kind.substr(0, kind.find(" on ")), kCheckerName));
  }
  if (sig != 0)
    throw InputError(fmt::format("cache '{}' is corrupt: libhdf5 crashed ({}) reading it in {}, a separate process; "
                                 "mechscope refuses to open it",
                                 name, sigabbrev_np(sig) ? fmt::format("SIG{}", sigabbrev_np(sig)) : std::to_string(sig),
                                 kCheckerName));
  throw InputError(fmt::format("cache '{}' could not be checked: {} exited with status {}{}{}", name, kCheckerName,
                               outcome.code, message.empty() ? "" : ": ",
                               lastLine(message)));
}

CheckCounts checkCounts() {
  return {g_passed.load(), g_refused.load(), g_crashed.load(), g_timedOut.load(), g_reused.load()};
}

}  // namespace mechscope::store::isolation
