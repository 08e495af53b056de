#pragma once
// Resuming a retrieval grid: the settings that change a test's result, their key, and the JSONL
// sidecar of finished tests (a settings header line, then one record per test). A sidecar written
// with other settings is refused, naming what differs, so a resumed grid never mixes two protocols.
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <string_view>
#include <tuple>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/common/head_ref.hpp"
#include "analysis/common/needle.hpp"
#include "analysis/retrieval/retrieval.hpp"

namespace mechscope::analysis {

/// Every setting that changes the result of one needle test (grid axes excluded: they key the records).
struct RetrievalSettings {
  std::string weightsHash;    ///< HookedTransformer::weightsHash()
  std::string tokenizerHash;  ///< fnv1a64 of tokenizer.json (+ tokenizer_config.json)
  std::string dtype, device;
  std::string haystackHash;   ///< fnv1a64 of the haystack text
  std::vector<Needle> needles;
  NeedleLayout layout;        ///< buffer, special tokens, question template, span threshold
  int maxNewTokens = 50;
  bool stopOnNewline = true;
  std::vector<int64_t> stopTokens;
  std::vector<HeadRef> maskedHeads;   ///< the main condition's mask
  std::vector<HeadRef> controlHeads;  ///< the random-heads control's mask (empty: no control)
  double successThreshold = 0.5;                  ///< ROUGE-1 recall in [0, 1]
  bool materialize = false;
};

/// FNV-1a 64 of `bytes` as "fnv1a64:<16 hex digits>".
std::string fnv1a64Hex(std::string_view bytes);

/// Heads as a JSON array of [layer, head] pairs (the masked and control heads of settings and results).
nlohmann::json headsJson(const std::vector<HeadRef>& heads);

/// The settings as one JSON object (keys in a fixed order; the sidecar's header).
nlohmann::json retrievalSettingsJson(const RetrievalSettings& s);

/// fnv1a64 of the settings JSON: equal for equal settings, different when any one differs.
std::string retrievalResumeKey(const RetrievalSettings& s);

/// The resume sidecar of a grid run.
class RetrievalResumeLog {
 public:
  /// Reads `path` when `resume` and it exists (InputError when its header's settings differ from
  /// `settings`, naming the keys, or a record's head grid is not nLayers × nHeads). Writes nothing
  /// until the first append(); without `resume` that append starts the file over.
  RetrievalResumeLog(std::filesystem::path path, nlohmann::json settings, bool resume, int nLayers, int nHeads);

  /// A finished test of `condition` ("main" or "control"), or nullptr.
  const RetrievalTestResult* find(const std::string& condition, int needle, int64_t length, int64_t depth) const;
  /// Appends one finished test (flushed, so a killed run keeps it).
  void append(const std::string& condition, const RetrievalTestResult& r);
  /// Tests read back from an earlier run.
  size_t resumed() const { return m_done.size(); }
  /// The sidecar's path.
  const std::filesystem::path& path() const { return m_path; }

 private:
  using Key = std::tuple<std::string, int, int64_t, int64_t>;
  std::filesystem::path m_path;
  nlohmann::json m_settings;
  bool m_append = false;  ///< the file exists with this header: append to it
  std::ofstream m_out;
  std::map<Key, RetrievalTestResult> m_done;
};

}  // namespace mechscope::analysis
