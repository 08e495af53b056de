#include "store/isolation/check_server.hpp"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fmt/format.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <vector>

#include "core/common/errors.hpp"

extern char** environ;

namespace mechscope::store::isolation {

namespace {
constexpr std::chrono::seconds kGrace{5};  // the child ends itself at `seconds`; this is the backstop
}  // namespace

void CheckServer::start(const std::filesystem::path& exe) {
  int sv[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0)
    throw Error(fmt::format("socket for mechscope-h5check: {}", std::strerror(errno)));
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, sv[1], 0);  // requests in, answers out, on one socket
  posix_spawn_file_actions_adddup2(&actions, sv[1], 1);
  posix_spawn_file_actions_addopen(&actions, 2, "/dev/null", O_WRONLY, 0);
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  sigset_t none, defaults;
  sigemptyset(&none);
  sigfillset(&defaults);  // signals this process ignores or handles take their default action there
  posix_spawnattr_setsigmask(&attr, &none);
  posix_spawnattr_setsigdefault(&attr, &defaults);
  posix_spawnattr_setpgroup(&attr, 0);  // its own process group: a timeout kills the server and its children
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETPGROUP);
  const std::string path = exe.string();
  char serve[] = "--serve";
  char* argv[] = {const_cast<char*>(path.c_str()), serve, nullptr};
  // Our sanitizer settings (an ASan test run's detect_leaks=1) would override the checker's own.
  std::vector<char*> env;
  for (char** e = environ; *e != nullptr; ++e)
    if (std::strncmp(*e, "ASAN_OPTIONS=", 13) != 0 && std::strncmp(*e, "LSAN_OPTIONS=", 13) != 0) env.push_back(*e);
  env.push_back(nullptr);
  pid_t pid = -1;
  const int rc = posix_spawn(&pid, path.c_str(), &actions, &attr, argv, env.data());
  posix_spawn_file_actions_destroy(&actions);
  posix_spawnattr_destroy(&attr);
  ::close(sv[1]);
  if (rc != 0) {
    ::close(sv[0]);
    throw InputError(fmt::format("cannot start mechscope-h5check '{}': {}", path, std::strerror(rc)));
  }
  m_pid = pid;
  m_socket = sv[0];
  m_exe = exe;
}

void CheckServer::stop() noexcept {
  if (m_socket >= 0) ::close(m_socket);
  m_socket = -1;
  if (m_pid > 0) {
    ::kill(-m_pid, SIGKILL);
    int status = 0;
    while (::waitpid(m_pid, &status, 0) < 0 && errno == EINTR) {
    }
  }
  m_pid = -1;
}

CheckServer::Exchange CheckServer::exchange(const std::string& request, double seconds, CheckOutcome& out) {
  for (std::size_t done = 0; done < request.size();) {
    const ssize_t n = ::send(m_socket, request.data() + done, request.size() - done, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return Exchange::ServerGone;
    done += static_cast<std::size_t>(n);
  }
  const auto deadline = std::chrono::steady_clock::now() +
                        std::chrono::milliseconds(static_cast<int64_t>(seconds * 1000)) + kGrace;
  std::string buf;
  std::vector<char> chunk(65536);
  for (;;) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) return Exchange::TimedOut;
    pollfd p{m_socket, POLLIN, 0};
    const int ready = ::poll(&p, 1, static_cast<int>(left.count()));
    if (ready < 0 && errno != EINTR) return Exchange::ServerGone;
    if (ready <= 0) continue;
    const ssize_t n = ::recv(m_socket, chunk.data(), chunk.size(), 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return Exchange::ServerGone;
    buf.append(chunk.data(), static_cast<std::size_t>(n));
    const std::size_t used = parseResponse(buf, out);
    if (used == std::string::npos) return Exchange::ServerGone;  // garbage: treat as a dead server
    if (used > 0) return Exchange::Answered;
  }
}

CheckOutcome CheckServer::check(const std::filesystem::path& exe, const std::string& file, double seconds) {
  if (m_pid > 0 && m_exe != exe) stop();
  const std::string request = formatRequest(seconds, file);
  for (int attempt = 0; attempt < 2; ++attempt) {
    if (m_pid <= 0) start(exe);
    CheckOutcome out;
    switch (exchange(request, seconds, out)) {
      case Exchange::Answered: return out;
      case Exchange::TimedOut:
        stop();
        out.killedForTime = true;
        return out;
      case Exchange::ServerGone: stop(); break;  // start a fresh one and ask again
    }
  }
  throw Error(fmt::format("mechscope-h5check '{}' --serve stopped answering (twice) while checking '{}'", exe.string(),
                          file));
}

}  // namespace mechscope::store::isolation
