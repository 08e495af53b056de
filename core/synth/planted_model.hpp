#pragma once
// Writing planted-circuit models as ordinary Hugging Face folders, and the embedded default model.
#include <filesystem>
#include <string>

#include <nlohmann/json.hpp>

namespace mechscope::planted {

/// Write config.json, model.safetensors, tokenizer.json, tokenizer_config.json and planted.json into
/// `dir` (created; written into a temporary sibling and renamed, so a failure leaves no half folder).
/// `family` gpt2 writes the GPT-2 recipe `recipe`; any other family of plantedFamilies() its per-family
/// recipe ("default" only).
void writePlantedFolder(const std::filesystem::path& dir, const std::string& recipe = "default",
                        const std::string& family = "gpt2");

/// The word-level tokenizer.json of the planted vocabulary (Hugging Face `WordLevel` + `Whitespace`).
nlohmann::json plantedTokenizerJson();

/// The embedded default model's folder: generated on first use under the cache directory
/// ($MECHSCOPE_CACHE, else $XDG_CACHE_HOME/mechscope, else ~/.cache/mechscope), then reused.
std::filesystem::path embeddedModelFolder();

/// Contents of a planted folder's planted.json.
nlohmann::json readPlantedJson(const std::filesystem::path& dir);

}  // namespace mechscope::planted
