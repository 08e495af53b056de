#pragma once
// Batch progress: a bar with ETA on a terminal, plain lines in logs, nothing with --quiet, and one
// JSON object per line with --progress-json (on stdout; the human forms go to stderr).
#include <chrono>
#include <cstdio>
#include <string>

#include <nlohmann/json.hpp>

namespace mechscope::batch {

/// How progress is shown.
enum class ProgressMode { Bar, Lines, Quiet, Json };

/// Bar when stderr is a terminal, Lines otherwise.
ProgressMode autoProgressMode();

/// Receives the runner's events and shows them.
class ProgressReporter {
 public:
  /// `out`: where Json events go (stdout); `err`: where bar/lines go (stderr).
  explicit ProgressReporter(ProgressMode mode, std::FILE* out = stdout, std::FILE* err = stderr);
  /// The run begins: `total` items in this run, `skipped` already finished earlier.
  void start(int total, int skipped);
  /// Item `key` starts.
  void itemStart(const std::string& key);
  /// Item `key` ended with `status` (ok, failed, skipped) after `seconds`.
  void itemDone(const std::string& key, const std::string& status, double seconds, const std::string& error = "");
  /// The run ended.
  void finish(int ok, int failed, int skipped, bool cancelled);
  /// Estimated seconds left (mean item time so far × items left); negative before the first item.
  [[nodiscard]] double etaSeconds() const;

 private:
  void emit(const nlohmann::json& event);
  void drawBar(const std::string& current);

  ProgressMode m_mode;
  std::FILE* m_out;
  std::FILE* m_err;
  int m_total = 0, m_done = 0, m_timed = 0;
  double m_itemSeconds = 0;
  std::chrono::steady_clock::time_point m_start;
};

/// "1m05s" / "12s".
std::string formatDuration(double seconds);

}  // namespace mechscope::batch
