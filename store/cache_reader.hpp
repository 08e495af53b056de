#pragma once
// CacheReader: opens a cache lazily (only attributes are read on open) and reads whole datasets or
// slices, e.g. one head of one layer's pattern, without touching the rest of the file.
#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "core/common/tensor.hpp"
#include "core/model/activation_cache.hpp"
#include "store/provenance.hpp"
#include "store/slice.hpp"

namespace mechscope::store {

namespace detail {
struct ReaderState;
}

/// One dataset of a cache as listed by CacheReader.
struct DatasetInfo {
  std::string name;                 ///< TransformerLens hook name for activations, else the full path
  std::string path;                 ///< full HDF5 path, e.g. "/activations/blocks.0.attn.hook_pattern"
  std::vector<int64_t> shape;       ///< dims
  std::string dtype;                ///< "float32", "float16", "bfloat16", "int64", ..., "string"
  std::vector<int64_t> chunks;      ///< chunk dims, empty when contiguous
  std::string compression;          ///< "none", "gzip 4", "shuffle + gzip 4"
  std::string axes;                 ///< the axes attribute ("batch,head,query,key"), may be empty
};

/// Read access to one cache file. Cheap to copy (copies share the open file). Thread-safe.
class CacheReader {
 public:
  /// Opens `path` lazily. InputError (naming the file) for a missing file, a .partial file, a file that is
  /// not HDF5 or is truncated, a file without schema_version, an unfinished file, a newer schema_version.
  static CacheReader open(const std::filesystem::path& path);

  /// The file this reader has open.
  [[nodiscard]] const std::filesystem::path& path() const;
  /// The file's schema_version.
  [[nodiscard]] int64_t schemaVersion() const;
  /// Provenance from the root attributes (missing ones are empty).
  [[nodiscard]] Provenance provenance() const;
  /// Every attribute of the object at `objPath` as text (numbers formatted), sorted by name.
  [[nodiscard]] std::map<std::string, std::string> attributes(const std::string& objPath = "/") const;
  /// The datasets under /activations, sorted by name (the TransformerLens hook name).
  [[nodiscard]] std::vector<DatasetInfo> activations() const;
  /// Every dataset in the file, sorted by path.
  [[nodiscard]] std::vector<DatasetInfo> datasets() const;
  /// Whether `path` names a dataset (hook name, "logits", or an absolute path; see read()).
  [[nodiscard]] bool has(const std::string& path) const;
  /// Information on one dataset; InputError naming it when absent.
  [[nodiscard]] DatasetInfo info(const std::string& path) const;

  /// Reads part of a dataset. `datasetPath` is a hook name ("blocks.0.attn.hook_pattern" → /activations/...),
  /// a root-relative path ("logits") or an absolute one ("/analyses/x/y"). Integer ranges drop their dim.
  /// The tensor has the stored dtype (fp16 → kHalf, bf16 → kBFloat16). Only the chunks touched are read.
  [[nodiscard]] at::Tensor readSlice(const std::string& datasetPath, const std::vector<SliceRange>& ranges) const;
  /// Reads a whole dataset (see readSlice for names).
  [[nodiscard]] at::Tensor read(const std::string& datasetPath) const;
  /// A string dataset (scalar), e.g. an analysis's JSON.
  [[nodiscard]] std::string readText(const std::string& datasetPath) const;
  /// /tokens [batch, pos] int64 (undefined tensor when absent).
  [[nodiscard]] at::Tensor tokens() const;
  /// /token_strings [batch][pos] (empty when absent).
  [[nodiscard]] std::vector<std::vector<std::string>> tokenStrings() const;
  /// The activations whose hook names match any glob ('*', '?', '[...]'), read whole, plus the tokens.
  [[nodiscard]] ActivationCache toActivationCache(const std::vector<std::string>& globs = {"*"}) const;

 private:
  explicit CacheReader(std::shared_ptr<detail::ReaderState> state) : m_state(std::move(state)) {}
  [[nodiscard]] std::string resolve(const std::string& datasetPath) const;
  std::shared_ptr<detail::ReaderState> m_state;
};

}  // namespace mechscope::store
