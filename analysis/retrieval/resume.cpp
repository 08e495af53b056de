#include "analysis/retrieval/resume.hpp"

#include <ATen/ATen.h>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "core/common/errors.hpp"

namespace mechscope::analysis {

std::string fnv1a64Hex(std::string_view bytes) {
  uint64_t h = 0xcbf29ce484222325ULL;
  for (const char c : bytes) {
    h ^= static_cast<unsigned char>(c);
    h *= 0x100000001b3ULL;
  }
  return fmt::format("fnv1a64:{:016x}", h);
}

nlohmann::json headsJson(const std::vector<HeadRef>& heads) {
  nlohmann::json a = nlohmann::json::array();
  for (const auto& [l, h] : heads) a.push_back({l, h});
  return a;
}

nlohmann::json retrievalSettingsJson(const RetrievalSettings& s) {
  nlohmann::json needles = nlohmann::json::array();
  for (const auto& n : s.needles) needles.push_back({{"needle", n.needle}, {"question", n.question}, {"real_needle", n.realNeedle}});
  // nlohmann::json orders object keys, so the dump is canonical.
  return {{"weights_hash", s.weightsHash},
          {"tokenizer_hash", s.tokenizerHash},
          {"dtype", s.dtype},
          {"device", s.device},
          {"haystack_hash", s.haystackHash},
          {"needles", needles},
          {"buffer", s.layout.buffer},
          {"add_special_tokens", s.layout.addSpecialTokens},
          {"question_template", s.layout.questionTemplate},
          {"span_threshold", s.layout.spanThreshold},
          {"max_new_tokens", s.maxNewTokens},
          {"stop_on_newline", s.stopOnNewline},
          {"stop_tokens", s.stopTokens},
          {"masked_heads", headsJson(s.maskedHeads)},
          {"control_heads", headsJson(s.controlHeads)},
          {"success_threshold", s.successThreshold},
          {"materialize", s.materialize}};
}

std::string retrievalResumeKey(const RetrievalSettings& s) { return fnv1a64Hex(retrievalSettingsJson(s).dump()); }

RetrievalResumeLog::RetrievalResumeLog(std::filesystem::path path, nlohmann::json settings, bool resume, int nLayers, int nHeads)
    : m_path(std::move(path)), m_settings(std::move(settings)) {
  if (!resume || !std::filesystem::exists(m_path)) return;
  std::ifstream in(m_path);
  if (!in) throw InputError(fmt::format("{}: cannot read the resume file", m_path.string()));
  std::string line;
  bool header = false;
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(line);
    } catch (const nlohmann::json::exception&) {
      continue;  // a line cut by a crash: that test is redone
    }
    if (!header) {
      if (!j.is_object() || !j.contains("retrieval_settings"))
        throw InputError(fmt::format("{}: resume file without a settings line (an older mechscope wrote it); delete it or pass --no-resume",
                                     m_path.string()));
      const auto& old = j["retrieval_settings"];
      std::vector<std::string> differ;
      for (const auto& [k, v] : m_settings.items())
        if (!old.contains(k) || old[k] != v) differ.push_back(k);
      for (const auto& [k, v] : old.items())
        if (!m_settings.contains(k)) differ.push_back(k);
      if (!differ.empty())
        throw InputError(fmt::format("{}: resume file was written with other settings ({}); delete it or pass --no-resume", m_path.string(),
                                     fmt::join(differ, ", ")));
      header = true;
      continue;
    }
    auto r = retrievalTestFromJson(j);
    if (r.score.dim() != 2 || r.score.size(0) != nLayers || r.score.size(1) != nHeads)
      throw InputError(fmt::format("{}: resume file is for a model with another head grid; delete it or pass --no-resume", m_path.string()));
    const std::string condition = j.value("condition", std::string("main"));
    m_done[{condition, r.needleIndex, r.length, r.depth}] = std::move(r);
  }
  m_append = header;
}

const RetrievalTestResult* RetrievalResumeLog::find(const std::string& condition, int needle, int64_t length, int64_t depth) const {
  const auto it = m_done.find({condition, needle, length, depth});
  return it == m_done.end() ? nullptr : &it->second;
}

void RetrievalResumeLog::append(const std::string& condition, const RetrievalTestResult& r) {
  if (!m_out.is_open()) {
    m_out.open(m_path, m_append ? std::ios::app : std::ios::trunc);
    if (!m_out) throw InputError(fmt::format("{}: cannot write the resume file", m_path.string()));
    if (!m_append) m_out << nlohmann::json{{"retrieval_settings", m_settings}}.dump() << "\n";
  }
  nlohmann::json j = retrievalTestToJson(r, true);
  j["condition"] = condition;
  if (r.seconds >= 0) j["seconds"] = r.seconds;  // the sidecar only: the --json output stays identical across runs
  m_out << j.dump() << "\n" << std::flush;
}

}  // namespace mechscope::analysis
