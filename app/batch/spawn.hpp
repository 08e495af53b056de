#pragma once
// Running a child process (this executable's subcommands) from the batch runner: posix_spawn (no
// fork handlers of LibTorch run), in a given folder, output to a log, cancellable.
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

namespace mechscope::batch {

/// Runs `exe` with `args` in `cwd`, stdout and stderr to `log`. Polls `cancelled` (may be empty);
/// when it turns true the child gets SIGINT (SIGKILL after `graceSeconds`). Returns the exit status,
/// 128 + signal for a child killed by a signal, -1 when it could not start.
int runProcess(const std::string& exe, const std::vector<std::string>& args, const std::filesystem::path& cwd,
               const std::filesystem::path& log, const std::function<bool()>& cancelled, double graceSeconds = 10.0);

}  // namespace mechscope::batch
