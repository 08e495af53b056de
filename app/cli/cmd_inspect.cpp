// `mechscope-cli inspect`: the parsed config, parameter count, weight files and hook list of a model.
#include <ATen/ATen.h>

#include <iostream>
#include <memory>

#include <fmt/format.h>

#include "app/cli/command.hpp"
#include "core/model/hooked_transformer.hpp"
#include "core/safetensors/safetensors_file.hpp"

namespace mechscope::cli {
namespace {

struct InspectOptions {
  std::string model;
  std::string device = "cpu";
  bool hooksOnly = false;
};

void runInspect(const InspectOptions& o) {
  // Load in the stored precision when it is 16-bit: weights stay views of the mapping (no conversion).
  std::string dtype = "fp32";
  if (std::filesystem::exists(std::filesystem::path(o.model) / "config.json")) {
    const auto stored = SafetensorsSet::openFolder(o.model);
    for (const auto& n : stored.names()) {
      const auto d = stored.info(n).dtype;
      if (d == SafetensorsDType::BF16 || d == SafetensorsDType::F16) dtype = "bf16";
      if (d == SafetensorsDType::F32 || d == SafetensorsDType::BF16 || d == SafetensorsDType::F16) break;
    }
  }
  auto model = HookedTransformer::load(o.model, LoadOptions{o.device, dtype});
  const auto names = model->hookNames();
  if (o.hooksOnly) {
    for (const auto& n : names) std::cout << n << "\n";
    return;
  }
  std::cout << fmt::format("model: {}\n", o.model);
  std::cout << model->config().summary();
  std::cout << fmt::format("parameters: {} ({:.3f} M)\n", model->parameterCount(), model->parameterCount() / 1e6);
  std::cout << fmt::format("loaded as: {} on {}\n", dtypeName(model->dtype()), model->devicePlan().describe());
  std::cout << fmt::format("weights hash: fnv1a64:{}\n", model->weightsHash());
  const auto set = SafetensorsSet::openFolder(o.model);
  for (const auto& f : set.files())
    std::cout << fmt::format("file: {} ({} tensors, {:.1f} MB)\n", f.path().filename().string(), f.names().size(), f.fileSize() / 1e6);
  std::cout << fmt::format("hook points ({}):\n", names.size());
  for (const auto& n : names) std::cout << "  " << n << "\n";
}

const RegisterCommand reg_cmd_inspect{"inspect", 15, [](CLI::App& root) {
  auto o = std::make_shared<InspectOptions>();
  auto* sub = root.add_subcommand("inspect", "Print a model folder's parsed config, parameter count and hook points");
  sub->add_option("--model", o->model, "Hugging Face model folder (config.json + safetensors)")->required();
  sub->add_option("--device", o->device, "Where to load: cpu (default), cuda:N, a comma list that splits the blocks, or auto; "
                                         "prints which blocks land where");
  sub->add_flag("--hooks-only", o->hooksOnly, "Print only the hook point names, one per line");
  sub->callback([o] { runInspect(*o); });
}};

}  // namespace
}  // namespace mechscope::cli
