#pragma once
// Where a cache came from: stored as root attributes of the HDF5 file (docs/hdf5-schema.md).
#include <string>

namespace mechscope::store {

/// Provenance of a cache. The writer fills mechscopeVersion and createdUtc itself; the reader returns all.
struct Provenance {
  std::string modelFolder;    ///< model folder as given (attribute model_folder)
  std::string family;         ///< config.json model_type, e.g. "gpt2" (family)
  std::string configJson;     ///< the full config.json text (config_json)
  std::string weightsHash;    ///< hash of the weight files, e.g. "sha256:..." (weights_hash)
  std::string dtype;          ///< compute dtype of the run, e.g. "float32" (dtype)
  std::string device;         ///< "cpu", "cuda:0" (device)
  std::string attentionPath;  ///< "explicit" or "fused" (attention_path)
  std::string bosHandling;    ///< e.g. "prepend" / "none" (bos_handling)
  std::string padding;        ///< e.g. "right" / "none" (padding)
  std::string commandLine;    ///< the command line that produced the cache (command_line)
  std::string mechscopeVersion;  ///< filled by the writer (mechscope_version)
  std::string createdUtc;        ///< filled by the writer, ISO 8601 UTC (created_utc)
};

}  // namespace mechscope::store
