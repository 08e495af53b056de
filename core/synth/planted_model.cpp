#include "core/synth/planted_model.hpp"

#include <ATen/ATen.h>

#include <cstdlib>
#include <fstream>
#include <random>

#include <fmt/format.h>

#include "core/common/errors.hpp"
#include "core/common/remove_tree.hpp"
#include "core/safetensors/safetensors_file.hpp"
#include "core/synth/planted_builder.hpp"
#include "core/synth/planted_family_builder.hpp"
#include "core/synth/planted_vocab.hpp"

namespace mechscope::planted {
namespace fs = std::filesystem;

namespace {

/// Bumped whenever the planted weights change, so stale cached folders are rebuilt.
constexpr int kPlantedVersion = 1;

void writeJson(const fs::path& path, const nlohmann::json& j) {
  std::ofstream out(path);
  if (!out) throw InputError(fmt::format("{}: cannot write", path.string()));
  out << j.dump(2) << '\n';
  if (!out) throw InputError(fmt::format("{}: write failed (disk full?)", path.string()));
}

}  // namespace

nlohmann::json plantedTokenizerJson() {
  nlohmann::json vocab = nlohmann::json::object();
  const auto& words = vocabulary();
  for (size_t i = 0; i < words.size(); ++i) vocab[words[i].text] = i;
  const std::string bos = words[0].text;
  nlohmann::json added = nlohmann::json::array();
  added.push_back({{"id", 0}, {"content", bos}, {"single_word", false}, {"lstrip", false}, {"rstrip", false},
                   {"normalized", false}, {"special", true}});
  added.push_back({{"id", 1}, {"content", "<unk>"}, {"single_word", false}, {"lstrip", false}, {"rstrip", false},
                   {"normalized", false}, {"special", true}});
  nlohmann::json special = {{bos, {{"id", bos}, {"ids", {0}}, {"tokens", {bos}}}}};
  return {
      {"version", "1.0"},
      {"truncation", nullptr},
      {"padding", nullptr},
      {"added_tokens", added},
      {"normalizer", nullptr},
      {"pre_tokenizer", {{"type", "Whitespace"}}},
      {"post_processor",
       {{"type", "TemplateProcessing"},
        {"single", {{{"SpecialToken", {{"id", bos}, {"type_id", 0}}}}, {{"Sequence", {{"id", "A"}, {"type_id", 0}}}}}},
        {"pair",
         {{{"SpecialToken", {{"id", bos}, {"type_id", 0}}}},
          {{"Sequence", {{"id", "A"}, {"type_id", 0}}}},
          {{"Sequence", {{"id", "B"}, {"type_id", 1}}}}}},
        {"special_tokens", special}}},
      {"decoder", nullptr},
      {"model", {{"type", "WordLevel"}, {"vocab", vocab}, {"unk_token", "<unk>"}}},
  };
}

void writePlantedFolder(const fs::path& dir, const std::string& recipe, const std::string& family) {
  if (family != "gpt2" && recipe != "default")
    throw InputError(fmt::format("plant: recipe '{}' is GPT-2 only; --family {} has the per-family recipe 'default'", recipe, family));
  const PlantedWeights w = family == "gpt2" ? buildPlantedWeights(recipe) : buildFamilyPlantedWeights(family);
  std::random_device rd;
  const fs::path tmp = dir.parent_path() / fmt::format(".{}.partial-{:x}", dir.filename().string(), rd());
  std::error_code ec;
  fs::create_directories(tmp, ec);
  if (ec) throw InputError(fmt::format("{}: cannot create folder: {}", tmp.string(), ec.message()));
  try {
    writeJson(tmp / "config.json", w.config);
    writeSafetensors(tmp / "model.safetensors", w.tensors, {{"format", "pt"}, {"mechscope_planted", recipe}});
    writeJson(tmp / "tokenizer.json", plantedTokenizerJson());
    writeJson(tmp / "tokenizer_config.json",
              {{"bos_token", vocabulary()[0].text}, {"eos_token", vocabulary()[0].text}, {"unk_token", "<unk>"},
               {"add_bos_token", true}, {"model_max_length", 1024}, {"tokenizer_class", "PreTrainedTokenizerFast"}});
    writeJson(tmp / "generation_config.json", {{"bos_token_id", 0}, {"eos_token_id", 0}});
    auto planted = w.planted;
    planted["planted_version"] = kPlantedVersion;
    writeJson(tmp / "planted.json", planted);
    if (fs::exists(dir)) mechscope::removeTree(dir);
    fs::rename(tmp, dir);
  } catch (...) {
    mechscope::removeTree(tmp, ec);
    throw;
  }
}

fs::path embeddedModelFolder() {
  fs::path base;
  if (const char* c = std::getenv("MECHSCOPE_CACHE"); c && *c) base = c;
  else if (const char* x = std::getenv("XDG_CACHE_HOME"); x && *x) base = fs::path(x) / "mechscope";
  else if (const char* h = std::getenv("HOME"); h && *h) base = fs::path(h) / ".cache" / "mechscope";
  else base = fs::temp_directory_path() / "mechscope-cache";
  const fs::path dir = base / fmt::format("planted-default-v{}", kPlantedVersion);
  if (!fs::exists(dir / "planted.json")) {
    std::error_code ec;
    fs::create_directories(base, ec);
    if (ec) throw InputError(fmt::format("{}: cannot create the cache folder: {}", base.string(), ec.message()));
    writePlantedFolder(dir, "default");
  }
  return dir;
}

nlohmann::json readPlantedJson(const fs::path& dir) {
  std::ifstream in(dir / "planted.json");
  if (!in) throw InputError(fmt::format("{}: no planted.json (not a planted model folder)", dir.string()));
  try {
    return nlohmann::json::parse(in);
  } catch (const std::exception& e) {
    throw InputError(fmt::format("{}: malformed planted.json: {}", (dir / "planted.json").string(), e.what()));
  }
}

}  // namespace mechscope::planted
