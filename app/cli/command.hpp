#pragma once
// Subcommand registry of mechscope-cli. Each cli/cmd_*.cpp registers itself with a static
// RegisterCommand, so adding a command never touches a shared file.
#include <CLI/CLI.hpp>

#include <functional>
#include <string>
#include <vector>

#include "core/common/run_context.hpp"

namespace mechscope::cli {

/// Exit codes of mechscope-cli (also the batch runner's).
enum ExitCode : int { kOk = 0, kInternalError = 1, kBadInput = 2, kPartialFailure = 3, kCancelled = 130 };

/// Adds one subcommand (with its options and callback) to the root app.
using CommandSetup = std::function<void(CLI::App& root)>;

/// One registered subcommand; `order` sorts the --help listing.
struct CommandEntry {
  std::string name;
  int order = 100;
  CommandSetup setup;
};

/// All registered subcommands.
std::vector<CommandEntry>& commandRegistry();

/// Static registration helper: `static RegisterCommand reg{"name", 10, [](CLI::App& root){...}};`
struct RegisterCommand {
  RegisterCommand(std::string name, int order, CommandSetup setup);
};

/// The process-wide RunContext; SIGINT cancels it so long commands stop cleanly.
RunContext& processContext();

/// Set by a command's callback to report a non-zero exit code without throwing.
void setExitCode(int code);
/// The exit code set by the last command (kOk by default).
int exitCode();

}  // namespace mechscope::cli
