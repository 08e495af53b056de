// `mechscope-cli list`: the analyses and model families this build knows.
#include <iostream>

#include <fmt/format.h>

#include "analysis/common/registry.hpp"
#include "app/cli/command.hpp"
#include "core/model/family_registry.hpp"

namespace mechscope::cli {
namespace {

void runList() {
  std::cout << "Analyses:\n";
  for (const auto& a : analysis::analysisRegistry())
    std::cout << fmt::format("  {:<22} {}{}\n", a.name, a.summary, a.available ? "" : "  [not built yet]");
  std::cout << "\nModel families (config.json model_type):\n";
  for (const auto& f : supportedFamilies()) std::cout << fmt::format("  {:<22} {}\n", f.modelType, f.description);
}

const RegisterCommand reg_cmd_list{"list", 90, [](CLI::App& root) {
                            auto* sub = root.add_subcommand("list", "List the analyses and model families known");
                            sub->callback(runList);
                          }};

}  // namespace
}  // namespace mechscope::cli
