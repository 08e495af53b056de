#include "app/batch/progress.hpp"

#include <unistd.h>

#include <cmath>

#include <fmt/format.h>

namespace mechscope::batch {
using nlohmann::json;

ProgressMode autoProgressMode() { return ::isatty(STDERR_FILENO) ? ProgressMode::Bar : ProgressMode::Lines; }

std::string formatDuration(double s) {
  if (s < 0) return "?";
  const long t = std::lround(s);
  if (t < 60) return fmt::format("{}s", t);
  if (t < 3600) return fmt::format("{}m{:02}s", t / 60, t % 60);
  return fmt::format("{}h{:02}m", t / 3600, (t % 3600) / 60);
}

ProgressReporter::ProgressReporter(ProgressMode mode, std::FILE* out, std::FILE* err) : m_mode(mode), m_out(out), m_err(err) {}

double ProgressReporter::etaSeconds() const {
  if (m_timed == 0) return -1;
  return m_itemSeconds / m_timed * (m_total - m_done);
}

void ProgressReporter::emit(const json& event) {
  std::fputs((event.dump() + "\n").c_str(), m_out);
  std::fflush(m_out);
}

void ProgressReporter::drawBar(const std::string& current) {
  constexpr int kWidth = 28;
  const int filled = m_total ? kWidth * m_done / m_total : kWidth;
  std::string bar(static_cast<size_t>(filled), '#');
  bar.resize(kWidth, '.');
  std::string name = current.size() > 40 ? "…" + current.substr(current.size() - 39) : current;
  std::fprintf(m_err, "\r\033[K[%s] %d/%d  ETA %s  %s", bar.c_str(), m_done, m_total, formatDuration(etaSeconds()).c_str(),
               name.c_str());
  std::fflush(m_err);
}

void ProgressReporter::start(int total, int skipped) {
  m_total = total;
  m_done = skipped;
  m_start = std::chrono::steady_clock::now();
  switch (m_mode) {
    case ProgressMode::Json: emit({{"event", "start"}, {"total", total}, {"skipped", skipped}}); break;
    case ProgressMode::Lines:
      std::fprintf(m_err, "batch: %d item%s to run, %d already finished\n", total, total == 1 ? "" : "s", skipped);
      break;
    case ProgressMode::Bar: drawBar(""); break;
    case ProgressMode::Quiet: break;
  }
}

void ProgressReporter::itemStart(const std::string& key) {
  switch (m_mode) {
    case ProgressMode::Json: emit({{"event", "item_start"}, {"key", key}, {"done", m_done}, {"total", m_total}}); break;
    case ProgressMode::Lines:
      std::fprintf(m_err, "batch: [%d/%d] %s ...\n", m_done + 1, m_total, key.c_str());
      std::fflush(m_err);
      break;
    case ProgressMode::Bar: drawBar(key); break;
    case ProgressMode::Quiet: break;
  }
}

void ProgressReporter::itemDone(const std::string& key, const std::string& status, double seconds, const std::string& error) {
  ++m_done;
  if (status != "skipped") {
    ++m_timed;
    m_itemSeconds += seconds;
  }
  const double eta = etaSeconds();
  switch (m_mode) {
    case ProgressMode::Json: {
      json e = {{"event", "item_done"}, {"key", key}, {"status", status}, {"seconds", seconds},
                {"done", m_done}, {"total", m_total}, {"eta_seconds", eta < 0 ? json(nullptr) : json(eta)}};
      if (!error.empty()) e["error"] = error;
      emit(e);
      break;
    }
    case ProgressMode::Lines:
      std::fprintf(m_err, "batch: [%d/%d] %s %s (%.1fs, ETA %s)%s%s\n", m_done, m_total, key.c_str(), status.c_str(), seconds,
                   formatDuration(eta).c_str(), error.empty() ? "" : ": ", error.c_str());
      std::fflush(m_err);
      break;
    case ProgressMode::Bar:
      if (status != "ok") std::fprintf(m_err, "\r\033[Kbatch: %s %s%s%s\n", key.c_str(), status.c_str(), error.empty() ? "" : ": ", error.c_str());
      drawBar(key);
      break;
    case ProgressMode::Quiet: break;
  }
}

void ProgressReporter::finish(int ok, int failed, int skipped, bool cancelled) {
  const double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - m_start).count();
  switch (m_mode) {
    case ProgressMode::Json:
      emit({{"event", "finish"}, {"ok", ok}, {"failed", failed}, {"skipped", skipped}, {"cancelled", cancelled}, {"seconds", wall}});
      break;
    case ProgressMode::Bar: std::fputs("\r\033[K", m_err); [[fallthrough]];
    case ProgressMode::Lines:
      std::fprintf(m_err, "batch: %s: %d ok, %d failed, %d skipped (already done) in %s\n", cancelled ? "cancelled" : "done", ok,
                   failed, skipped, formatDuration(wall).c_str());
      break;
    case ProgressMode::Quiet: break;
  }
}

}  // namespace mechscope::batch
