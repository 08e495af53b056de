#include "app/h5check/serve.hpp"

#include <fcntl.h>
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

// Forks one checker child for `path`, collects its stderr and how it ended.
store::isolation::CheckOutcome runChild(const std::string& path, double seconds,
                                        const std::function<int(const std::string&, double)>& checkOne) {
  store::isolation::CheckOutcome out;
  int pipeFds[2];
  if (::pipe2(pipeFds, O_CLOEXEC) != 0) {
    out.code = store::isolation::kExitError;
    out.message = "mechscope-h5check --serve: no pipe for the child";
    return out;
  }
  const pid_t pid = ::fork();
  if (pid == 0) {
    ::close(pipeFds[0]);
    ::close(0);  // the request channel is the server's, not the child's
    ::close(1);
    ::dup2(pipeFds[1], 2);
    _exit(checkOne(path, seconds));
  }
  ::close(pipeFds[1]);
  if (pid < 0) {
    ::close(pipeFds[0]);
    out.code = store::isolation::kExitError;
    out.message = "mechscope-h5check --serve: fork failed";
    return out;
  }
  char buf[1024];
  for (;;) {
    const ssize_t n = ::read(pipeFds[0], buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    if (out.message.size() < kMaxMessageBytes) out.message.append(buf, static_cast<std::size_t>(n));
  }
  ::close(pipeFds[0]);
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  out.signaled = WIFSIGNALED(status);
  out.code = out.signaled ? WTERMSIG(status) : WEXITSTATUS(status);
  return out;
}

}  // namespace

int serveChecks(const std::function<int(const std::string& path, double seconds)>& checkOne) {
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
