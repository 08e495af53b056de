// `mechscope-cli synth`: random-init model folders of any supported family at realistic sizes.
#include <iostream>

#include <fmt/format.h>

#include "app/cli/command.hpp"
#include "core/synth/synth_model.hpp"

namespace mechscope::cli {
namespace {

struct SynthOptions {
  std::string family = "gpt2", preset = "tiny", out, dtype = "fp32";
  uint64_t seed = 0;
};

const RegisterCommand reg_cmd_synth{"synth", 61, [](CLI::App& root) {
  auto o = std::make_shared<SynthOptions>();
  auto* sub = root.add_subcommand("synth", "Write a random-init model folder (benchmarks, trying the tool)");
  sub->add_option("--family", o->family, "gpt2, gpt_neox, llama, mistral, qwen2, qwen3, phi3, olmo2, gemma2, gemma3_text, mixtral, qwen2_moe, qwen3_moe, gpt_oss");
  sub->add_option("--preset", o->preset, "tiny (any family), gpt2-small, qwen3-0.6b, llama-1b, llama-7b");
  sub->add_option("--seed", o->seed, "Random seed");
  sub->add_option("--dtype", o->dtype, "Stored dtype: fp32 or bf16");
  sub->add_option("--out", o->out, "Folder to write")->required();
  sub->callback([o] {
    const int64_t n = synth::writeSynthFolder(o->out, o->family, o->preset, o->seed, o->dtype);
    std::cout << fmt::format("wrote {} {} ({:.1f} M parameters, {}) to {}\n", o->family, o->preset, n / 1e6, o->dtype,
                             o->out);
  });
}};

}  // namespace
}  // namespace mechscope::cli
