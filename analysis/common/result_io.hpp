#pragma once
// Results of an analysis as one generic value: named arrays (HDF5 datasets) plus a JSON document
// (the --json file, also stored in the HDF5 file as /analyses/<name>/result_json). Shared by every
// analysis command; the HDF5 side exists only in builds with the store (MECHSCOPE_WITH_HDF5).
#include <filesystem>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/common/tensor.hpp"

namespace mechscope::analysis {

/// Where a result came from (root attributes of the HDF5 file).
struct ResultProvenance {
  std::string modelFolder;  ///< as given on the command line
  std::string family;       ///< config.json model_type
  std::string configJson;   ///< the config.json text
  std::string weightsHash;  ///< HookedTransformer::weightsHash()
  std::string dtype;        ///< compute dtype name
  std::string device;       ///< e.g. "cpu"
  std::string attentionPath;  ///< "probe" or "materialized"
  std::string commandLine;  ///< the command that produced it
  std::string seed;         ///< the --seed in use (root attribute "seed"; empty: the command has none)
};

/// One analysis result: `arrays` go to /analyses/<name>/<array name>, `json` to the --json file.
struct AnalysisResult {
  std::string name;  ///< analysis name, e.g. "sinks" (HDF5 group /analyses/<name>)
  nlohmann::json json = nlohmann::json::object();          ///< the documented --json keys
  std::vector<std::pair<std::string, at::Tensor>> arrays;  ///< named arrays, any dtype/device
  std::string summaryLine{};  ///< the analysis' own one-line summary for the terminal ("" = derived from its table)

  /// Adds (or replaces) a named array.
  void addArray(const std::string& arrayName, const at::Tensor& t);
};

/// A tensor as nested JSON lists (any rank; floats as double, integers as int64, bool as bool).
nlohmann::json tensorToJson(const at::Tensor& t);

/// Writes `result.json` to `path` (pretty-printed; written to PATH.partial then renamed).
/// InputError when the file cannot be written.
void writeResultJson(const AnalysisResult& result, const std::filesystem::path& path);

/// Whether this build can write HDF5 results.
bool resultH5Available();

/// Writes the arrays and the JSON document under /analyses/<name>/ of a new HDF5 file `path`
/// (through the store's CacheWriter: PATH.partial, committed on success). UnsupportedError without HDF5.
void writeResultH5(const AnalysisResult& result, const std::filesystem::path& path, const ResultProvenance& provenance);

}  // namespace mechscope::analysis
