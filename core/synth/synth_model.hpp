#pragma once
// Random-init Hugging Face model folders of every supported family at realistic sizes, for
// benchmarks and for trying the tool without weights (`mechscope-cli synth`).
#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace mechscope::synth {

/// Preset names: "tiny" (every family) and the realistic shapes "gpt2-small", "qwen3-0.6b", "llama-1b".
std::vector<std::string> presetNames();

/// The Hugging Face config.json of a (family, preset); InputError for an unknown or mismatched pair.
nlohmann::json presetConfig(const std::string& family, const std::string& preset);

/// Writes config.json + model.safetensors with N(0, 0.02) matrices, unit norm weights and zero
/// biases, deterministic in `seed`, stored as `dtype` ("fp32" or "bf16"). Tensor names and shapes
/// come from the family's own loader (WeightSource's factory mode), so they are exactly what the
/// family expects. Returns the parameter count.
int64_t writeSynthFolder(const std::filesystem::path& dir, const std::string& family, const std::string& preset,
                         uint64_t seed, const std::string& dtype = "fp32");

}  // namespace mechscope::synth
