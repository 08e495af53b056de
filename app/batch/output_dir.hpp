#pragma once
// The batch output folder: where each item's files go, the records of finished items (written
// atomically: temp file + rename), the work folders of running items and the lock that keeps two
// runs out of one folder.
//
//   OUT/summary.json, OUT/report.md|html       the index (rewritten after every run / merge)
//   OUT/MODEL/ANALYSIS/INPUT/                  an item's files: result.h5, result.json, run.log, figures/
//   OUT/.batch/plan.json                       the plan's items and hashes (merge checks shards against it)
//   OUT/.batch/done/MODEL__ANALYSIS__INPUT.json the item's record (status ok|failed), written last
//   OUT/.batch/work/KEY.PID/                   an item while it runs; renamed into place when it succeeds
#include <filesystem>
#include <optional>
#include <string>

#include <nlohmann/json.hpp>

namespace mechscope::batch {

/// Writes `text` to `path` through a temporary file in the same folder and a rename.
void writeFileAtomic(const std::filesystem::path& path, const std::string& text);

/// Reads a JSON file (nullopt when missing or unreadable/malformed).
std::optional<nlohmann::json> readJsonFile(const std::filesystem::path& path);

/// Paths inside one output folder.
class OutputDir {
 public:
  explicit OutputDir(std::filesystem::path root) : m_root(std::move(root)) {}
  [[nodiscard]] const std::filesystem::path& root() const { return m_root; }
  [[nodiscard]] std::filesystem::path itemDir(const std::string& key) const { return m_root / key; }
  [[nodiscard]] std::filesystem::path recordPath(const std::string& key) const;
  [[nodiscard]] std::filesystem::path workDir(const std::string& key) const;  ///< fresh for this process
  [[nodiscard]] std::filesystem::path planJson() const { return m_root / ".batch" / "plan.json"; }
  [[nodiscard]] std::filesystem::path planCopy() const { return m_root / ".batch" / "plan.toml"; }

  /// The item's record, if one was written.
  [[nodiscard]] std::optional<nlohmann::json> record(const std::string& key) const;
  /// Writes the record atomically (the last step of an item).
  void writeRecord(const std::string& key, const nlohmann::json& record) const;
  /// Removes the item's record, final folder and any work folder left by an earlier (killed) run.
  void clearItem(const std::string& key) const;
  /// Moves a finished work folder into the item's place (rename; the parent folders are created).
  void commitItem(const std::string& key, const std::filesystem::path& work) const;

  /// Takes the folder's lock (flock on .batch/lock; released when the process ends). InputError when
  /// another run holds it.
  void lock();

 private:
  std::filesystem::path m_root;
  int m_lockFd = -1;
};

/// "model/analysis/input" → "model__analysis__input" (one file name).
std::string flatKey(const std::string& key);

}  // namespace mechscope::batch
