#include "store/isolation/isolated_check.hpp"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fmt/format.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "core/common/errors.hpp"
#include "mechscope/h5check_path.hpp"  // generated: MECHSCOPE_H5CHECK_BUILD_PATH

extern char** environ;

namespace mechscope::store::isolation {

namespace {

std::atomic<int64_t> g_passed{0}, g_refused{0}, g_crashed{0}, g_timedOut{0};

constexpr const char* kCheckerName = "mechscope-h5check";
constexpr int kDefaultTimeoutSeconds = 60;
constexpr std::size_t kMaxMessageBytes = 4096;

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

// Closes a descriptor on scope exit.
struct Fd {
  int fd = -1;
  ~Fd() {
    if (fd >= 0) ::close(fd);
  }
};

// Runs `argv` with stderr captured; returns the wait status and fills `message` (first kMaxMessageBytes).
// The child is killed when it outlives `timeout` (plus a grace period: it sets its own alarm first).
int runCaptured(const std::vector<std::string>& args, std::chrono::milliseconds timeout, std::string& message,
                bool& killedForTime) {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) throw Error(fmt::format("pipe for {}: {}", kCheckerName, std::strerror(errno)));
  Fd readEnd{fds[0]}, writeEnd{fds[1]};
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0);
  posix_spawn_file_actions_adddup2(&actions, writeEnd.fd, 2);
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  sigset_t none, defaults;
  sigemptyset(&none);
  sigfillset(&defaults);  // signals this process ignores or handles take their default action in the checker
  posix_spawnattr_setsigmask(&attr, &none);
  posix_spawnattr_setsigdefault(&attr, &defaults);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
  std::vector<char*> argv;
  for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  // Our sanitizer settings (an ASan test run's detect_leaks=1) would override the checker's own.
  std::vector<char*> env;
  for (char** e = environ; *e != nullptr; ++e)
    if (std::strncmp(*e, "ASAN_OPTIONS=", 13) != 0 && std::strncmp(*e, "LSAN_OPTIONS=", 13) != 0) env.push_back(*e);
  env.push_back(nullptr);
  pid_t pid = -1;
  const int rc = posix_spawn(&pid, argv[0], &actions, &attr, argv.data(), env.data());
  posix_spawn_file_actions_destroy(&actions);
  posix_spawnattr_destroy(&attr);
  if (rc != 0) throw InputError(fmt::format("cannot start {} '{}': {}", kCheckerName, args[0], std::strerror(rc)));
  ::close(writeEnd.fd);
  writeEnd.fd = -1;

  const auto deadline = std::chrono::steady_clock::now() + timeout + std::chrono::seconds(5);
  killedForTime = false;
  char buf[512];
  for (;;) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) {
      ::kill(pid, SIGKILL);
      killedForTime = true;
      break;
    }
    pollfd p{readEnd.fd, POLLIN, 0};
    const int ready = ::poll(&p, 1, static_cast<int>(left.count()));
    if (ready < 0 && errno == EINTR) continue;
    if (ready <= 0) continue;  // timeout: the loop kills it
    const ssize_t n = ::read(readEnd.fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;  // EOF: the checker exited (or closed stderr)
    if (message.size() < kMaxMessageBytes) message.append(buf, static_cast<std::size_t>(n));
  }
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  return status;
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

void checkCacheInChildProcess(const std::filesystem::path& path) {
  const double seconds = timeoutSeconds();
  const auto exe = h5checkExecutable();
  std::string message;
  bool killedForTime = false;
  const int status =
      runCaptured({exe.string(), "--timeout", fmt::format("{}", seconds), "--", path.string()},
                  std::chrono::milliseconds(static_cast<int64_t>(seconds * 1000)), message, killedForTime);
  const std::string name = path.string();
  if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {
    ++g_passed;
    return;
  }
  if (WIFEXITED(status) && WEXITSTATUS(status) == kExitRefused) {
    ++g_refused;
    throw InputError(lastLine(message));
  }
  const int sig = WIFSIGNALED(status) ? WTERMSIG(status) : 0;
  if (killedForTime || sig == SIGALRM || sig == SIGXCPU) {
    ++g_timedOut;
    throw InputError(fmt::format("cache '{}' is corrupt: libhdf5 was still reading it after {} s in {} (a corrupt "
                                 "structure makes it loop); mechscope refuses to open it (raise "
                                 "MECHSCOPE_H5CHECK_TIMEOUT for a huge trusted cache)",
                                 name, seconds, kCheckerName));
  }
  ++g_crashed;
  if (WIFEXITED(status) && WEXITSTATUS(status) == kExitMemoryError) {
    const auto at = message.find("AddressSanitizer: ");
    const std::string kind = at == std::string::npos ? "memory error" : firstLine(message.substr(at + 18));
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
                               WIFEXITED(status) ? WEXITSTATUS(status) : -1, message.empty() ? "" : ": ",
                               lastLine(message)));
}

CheckCounts checkCounts() { return {g_passed.load(), g_refused.load(), g_crashed.load(), g_timedOut.load()}; }

}  // namespace mechscope::store::isolation
