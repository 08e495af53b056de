// `mechscope-cli plant`: write a planted-circuit model folder (an ordinary Hugging Face folder of any family).
#include <iostream>

#include <fmt/format.h>

#include "app/cli/command.hpp"
#include "core/synth/planted_builder.hpp"
#include "core/synth/planted_family_config.hpp"
#include "core/synth/planted_model.hpp"

namespace mechscope::cli {
namespace {

struct PlantOptions {
  std::string out;
  std::string recipe = "default";
  std::string family = "gpt2";
  bool embedded = false;
};

const RegisterCommand reg_cmd_plant{"plant", 60, [](CLI::App& root) {
  auto opts = std::make_shared<PlantOptions>();
  auto* sub = root.add_subcommand("plant", "Write a model folder with hand-planted circuits (known answers)");
  sub->add_option("--out", opts->out, "Folder to write (config.json, model.safetensors, tokenizer.json, planted.json)");
  sub->add_option("--recipe", opts->recipe, "Recipe name")
      ->check(CLI::IsMember(planted::plantedRecipes()));
  sub->add_option("--family", opts->family,
                  fmt::format("Model family: {} (gpt2: the full GPT-2 recipe with IOI and Colored Objects; the others: "
                              "sink, previous-token and induction/retrieval heads)",
                              fmt::join(planted::plantedFamilies(), ", ")))
      ->check(CLI::IsMember(planted::plantedFamilies()));
  sub->add_flag("--embedded", opts->embedded, "Print (and generate if needed) the embedded default model folder");
  sub->callback([opts] {
    if (opts->embedded) {
      std::cout << planted::embeddedModelFolder().string() << "\n";
      return;
    }
    if (opts->out.empty()) throw InputError("plant: --out DIR is required (or --embedded)");
    planted::writePlantedFolder(opts->out, opts->recipe, opts->family);
    if (opts->family == "gpt2") std::cout << fmt::format("wrote planted model '{}' to {}\n", opts->recipe, opts->out);
    else std::cout << fmt::format("wrote planted {} model '{}' to {}\n", opts->family, opts->recipe, opts->out);
  });
}};

}  // namespace
}  // namespace mechscope::cli
