#include "analysis/common/rouge.hpp"

#include <algorithm>
#include <map>

namespace mechscope::analysis {

std::string lightStem(const std::string& w) {
  if (w.size() <= 3) return w;
  if (w.ends_with("sses")) return w.substr(0, w.size() - 2);
  if (w.ends_with("ies")) return w.substr(0, w.size() - 2);
  for (const char* suf : {"ing", "ed", "ly", "es"}) {
    const std::string s(suf);
    if (w.ends_with(s) && w.size() - s.size() >= 3) return w.substr(0, w.size() - s.size());
  }
  if (w.ends_with("s") && !w.ends_with("ss")) return w.substr(0, w.size() - 1);
  return w;
}

std::vector<std::string> rougeTokens(const std::string& text, bool stem) {
  std::vector<std::string> out;
  std::string cur;
  auto flush = [&] {
    if (!cur.empty()) out.push_back(stem ? lightStem(cur) : cur);
    cur.clear();
  };
  for (char ch : text) {
    const auto u = static_cast<unsigned char>(ch);
    if ((u >= 'a' && u <= 'z') || (u >= '0' && u <= '9')) cur.push_back(ch);
    else if (u >= 'A' && u <= 'Z') cur.push_back(static_cast<char>(u - 'A' + 'a'));
    else flush();
  }
  flush();
  return out;
}

double rouge1Recall(const std::string& reference, const std::string& candidate, bool stem) {
  const auto ref = rougeTokens(reference, stem);
  if (ref.empty()) return 0.0;
  std::map<std::string, int> r, c;
  for (const auto& t : ref) ++r[t];
  for (const auto& t : rougeTokens(candidate, stem)) ++c[t];
  int hit = 0;
  for (const auto& [w, n] : r) {
    const auto it = c.find(w);
    if (it != c.end()) hit += std::min(n, it->second);
  }
  return static_cast<double>(hit) / static_cast<double>(ref.size());
}

}  // namespace mechscope::analysis
