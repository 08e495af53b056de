// `mechscope-cli list`: the analyses and model families this build knows.
#include <iostream>
#include <memory>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "analysis/common/registry.hpp"
#include "app/cli/command.hpp"
#include "core/model/family_registry.hpp"

namespace mechscope::cli {
namespace {

/// The registry as JSON: every analysis with its summary, input kinds and parameters (plan key, type,
/// CLI option), for scripts and for tests/cli/registry_flags.sh.
void printRegistryJson() {
  nlohmann::json out = nlohmann::json::array();
  for (const auto& a : analysis::analysisRegistry()) {
    nlohmann::json params = nlohmann::json::array();
    for (const auto& p : a.params)
      params.push_back({{"key", p.key}, {"type", std::string(analysis::describe(p.type))}, {"flag", p.flag}, {"choices", p.choices},
                        {"doc", p.doc}, {"default", p.defaultValue}});
    out.push_back({{"name", a.name}, {"summary", a.summary}, {"available", a.available}, {"inputs", a.acceptsKinds},
                   {"required", a.required}, {"params", params}, {"plugin", a.plugin}, {"input_files", a.inputFiles}});
  }
  std::cout << out.dump(1) << "\n";
}

void runList(bool json) {
  if (json) return printRegistryJson();
  std::cout << "Analyses:\n";
  for (const auto& a : analysis::analysisRegistry())
    std::cout << fmt::format("  {:<22} {}{}\n", a.name, a.summary, a.available ? "" : "  [not built yet]");
  std::cout << "\nModel families (config.json model_type):\n";
  for (const auto& f : supportedFamilies()) std::cout << fmt::format("  {:<22} {}\n", f.modelType, f.description);
}

const RegisterCommand reg_cmd_list{"list", 90, [](CLI::App& root) {
                            auto* sub = root.add_subcommand("list", "List the analyses and model families known");
                            auto json = std::make_shared<bool>(false);
                            sub->add_flag("--json", *json, "print the analyses with their parameters and CLI options as JSON");
                            sub->callback([json] { runList(*json); });
                          }};

}  // namespace
}  // namespace mechscope::cli
