// mechscope-cli: the headless front end. Errors are exceptions inside the engine, caught here and
// mapped onto exit codes: 2 bad input, 1 internal error, 130 cancelled.
#include <csignal>
#include <cstdio>
#include <algorithm>
#include <iostream>

#include <fmt/format.h>

#include "app/cli/command.hpp"
#include "core/common/build_info.hpp"
#include "core/common/errors.hpp"
#include "core/common/threads.hpp"
#include "mechscope/version.hpp"

namespace mechscope::cli {

std::vector<CommandEntry>& commandRegistry() {
  static std::vector<CommandEntry> entries;
  return entries;
}

RegisterCommand::RegisterCommand(std::string name, int order, CommandSetup setup) {
  commandRegistry().push_back(CommandEntry{std::move(name), order, std::move(setup)});
}

RunContext& processContext() {
  static RunContext ctx;
  return ctx;
}

namespace {
int g_exitCode = kOk;
CancelToken* g_token = nullptr;
extern "C" void onSigint(int) {
  if (g_token) g_token->cancel();
}
}  // namespace

void setExitCode(int code) { g_exitCode = code; }
int exitCode() { return g_exitCode; }

}  // namespace mechscope::cli

int main(int argc, char** argv) {
  mechscope::ensurePassiveOpenMpWait(argv);  // first: libgomp reads its wait policy only at load
  using namespace mechscope;
  using namespace mechscope::cli;
  CLI::App app{"mechscope-cli: mechanistic-interpretability workbench (headless)", "mechscope-cli"};
  app.require_subcommand(0, 1);
  app.set_version_flag("--version", std::string("mechscope ") + kVersion);
  bool buildInfoFlag = false;
  app.add_flag("--build-info", buildInfoFlag, "Print the versions of mechscope and its libraries");

  auto& reg = commandRegistry();
  std::stable_sort(reg.begin(), reg.end(), [](const auto& a, const auto& b) { return a.order < b.order; });
  for (auto& entry : reg) entry.setup(app);

  g_token = processContext().cancel.get();
  std::signal(SIGINT, onSigint);
  std::signal(SIGTERM, onSigint);

  try {
    configureThreads();  // before any tensor work: Debian's LibTorch starts with one intra-op thread
    app.parse(argc, argv);
    if (buildInfoFlag) {
      std::cout << buildInfo();
      return kOk;
    }
    if (app.get_subcommands().empty()) {
      std::cout << app.help();
      return kOk;
    }
  } catch (const CLI::ParseError& e) {
    const int rc = app.exit(e);
    return rc == 0 ? kOk : kBadInput;
  } catch (const Cancelled&) {
    std::fprintf(stderr, "mechscope-cli: cancelled\n");
    return kCancelled;
  } catch (const InputError& e) {
    std::fprintf(stderr, "mechscope-cli: error: %s\n", e.what());
    return kBadInput;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "mechscope-cli: internal error: %s\n", e.what());
    return kInternalError;
  }
  return exitCode();
}
