#include "app/h5check/serve.hpp"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>

#include "store/isolation/check_protocol.hpp"
#include "store/isolation/isolated_check.hpp"

namespace mechscope::h5check {

namespace {

constexpr std::size_t kMaxMessageBytes = 4096;

bool writeAll(int fd, const std::string& s) {
  std::size_t done = 0;
  while (done < s.size()) {
    const ssize_t n = ::write(fd, s.data() + done, s.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    done += static_cast<std::size_t>(n);
  }
  return true;
}

constexpr std::size_t kMaxManifestBytes = std::size_t{1} << 31;

// Forks one checker child for `path`: its stderr and its manifest (fd 3) are collected, both at once so a
// child writing a large manifest never waits on a full stderr pipe or the other way round.
store::isolation::CheckOutcome runChild(const std::string& path, double seconds, const CheckOne& checkOne) {
  store::isolation::CheckOutcome out;
  int errFds[2], manFds[2];
  if (::pipe2(errFds, O_CLOEXEC) != 0 || ::pipe2(manFds, O_CLOEXEC) != 0) {
    out.code = store::isolation::kExitError;
    out.message = "mechscope-h5check --serve: no pipe for the child";
    return out;
  }
  const pid_t pid = ::fork();
  if (pid == 0) {
    ::close(errFds[0]);
    ::close(manFds[0]);
    ::close(0);  // the request channel is the server's, not the child's
    ::close(1);
    ::dup2(errFds[1], 2);
    ::dup2(manFds[1], 3);
    _exit(checkOne(path, seconds, 3));
  }
  ::close(errFds[1]);
  ::close(manFds[1]);
  if (pid < 0) {
    ::close(errFds[0]);
    ::close(manFds[0]);
    out.code = store::isolation::kExitError;
    out.message = "mechscope-h5check --serve: fork failed";
    return out;
  }
  pollfd fds[2] = {{errFds[0], POLLIN, 0}, {manFds[0], POLLIN, 0}};
  std::string* sinks[2] = {&out.message, &out.manifest};
  const std::size_t caps[2] = {kMaxMessageBytes, kMaxManifestBytes};
  int open = 2;
  char buf[65536];
  while (open > 0) {
    if (::poll(fds, 2, -1) < 0) {
      if (errno == EINTR) continue;
      break;
    }
    for (int i = 0; i < 2; ++i) {
      if (fds[i].fd < 0 || fds[i].revents == 0) continue;
      const ssize_t n = ::read(fds[i].fd, buf, sizeof buf);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) {
        ::close(fds[i].fd);
        fds[i].fd = -1;
        --open;
        continue;
      }
      if (sinks[i]->size() < caps[i]) sinks[i]->append(buf, static_cast<std::size_t>(n));
    }
  }
  for (auto& f : fds)
    if (f.fd >= 0) ::close(f.fd);
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  out.signaled = WIFSIGNALED(status);
  out.code = out.signaled ? WTERMSIG(status) : WEXITSTATUS(status);
  if (out.signaled || out.code != 0) out.manifest.clear();  // only a pass hands a manifest on
  return out;
}

}  // namespace

int serveChecks(const CheckOne& checkOne) {
  ::signal(SIGPIPE, SIG_IGN);  // mechscope gone: the write fails and the loop ends
  std::string pending;
  char buf[4096];
  for (;;) {
    std::size_t nl;
    while ((nl = pending.find('\n')) == std::string::npos) {
      const ssize_t n = ::read(0, buf, sizeof buf);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return 0;
      pending.append(buf, static_cast<std::size_t>(n));
    }
    const std::string line = pending.substr(0, nl);
    pending.erase(0, nl + 1);
    double seconds = 0;
    std::string path;
    store::isolation::CheckOutcome out;
    if (store::isolation::parseRequest(line, seconds, path)) {
      out = runChild(path, seconds, checkOne);
    } else {
      out.code = store::isolation::kExitError;
      out.message = "mechscope-h5check --serve: malformed request";
    }
    if (!writeAll(1, store::isolation::formatResponse(out))) return 0;
  }
}

}  // namespace mechscope::h5check
