#pragma once
// The one head type of mechscope (engine, analyses, CLI, GUI and views) and the one parser of head
// lists: "LAYER.HEAD[,LAYER.HEAD...]", each optionally "@ROLE" (a dataset role position, e.g. 9.9@END).
// Standard library only, header-only: views/ (no torch) includes it too.
#include <cctype>
#include <compare>
#include <string>
#include <vector>

#include "core/common/errors.hpp"

namespace mechscope {

/// A head: 0-indexed layer and head.
struct HeadRef {
  int layer = 0;
  int head = 0;
  friend bool operator==(const HeadRef&, const HeadRef&) = default;
  friend auto operator<=>(const HeadRef&, const HeadRef&) = default;
};

/// "LAYER.HEAD".
inline std::string toString(const HeadRef& h) { return std::to_string(h.layer) + "." + std::to_string(h.head); }

/// One entry of a head list: the head and its role ("" when none was given).
struct HeadSpec {
  HeadRef head;
  std::string role;
};

/// Parses a head list. `what` names the option in errors ("--heads"); `allowRoles` accepts "@ROLE"
/// suffixes; with `layers`/`heads` > 0 every head must lie inside the model. Spaces around entries are
/// ignored, empty entries skipped. InputError naming `what` and the entry otherwise.
inline std::vector<HeadSpec> parseHeadSpecs(const std::string& text, const std::string& what, bool allowRoles = false, int layers = 0,
                                            int heads = 0) {
  std::vector<HeadSpec> out;
  size_t start = 0;
  while (start <= text.size()) {
    size_t end = text.find(',', start);
    if (end == std::string::npos) end = text.size();
    std::string item = text.substr(start, end - start);
    start = end + 1;
    const size_t a = item.find_first_not_of(" \t"), b = item.find_last_not_of(" \t");
    if (a == std::string::npos) continue;
    item = item.substr(a, b - a + 1);
    const size_t at = item.find('@');
    HeadSpec spec;
    if (at != std::string::npos) {
      if (!allowRoles) throw InputError(what + ": '" + item + "' is not LAYER.HEAD (a role '@…' is not accepted here)");
      spec.role = item.substr(at + 1);
      if (spec.role.empty()) throw InputError(what + ": '" + item + "' names no role after '@'");
      item = item.substr(0, at);
    }
    const size_t dot = item.find('.');
    auto digits = [](const std::string& s) {
      if (s.empty() || s.size() > 6) return false;
      for (char c : s)
        if (!std::isdigit(static_cast<unsigned char>(c))) return false;
      return true;
    };
    if (dot == std::string::npos || !digits(item.substr(0, dot)) || !digits(item.substr(dot + 1)))
      throw InputError(what + ": '" + item + "' is not LAYER.HEAD (e.g. 9.9,10.0)");
    spec.head = {std::stoi(item.substr(0, dot)), std::stoi(item.substr(dot + 1))};
    if ((layers > 0 && spec.head.layer >= layers) || (heads > 0 && spec.head.head >= heads))
      throw InputError(what + ": head " + toString(spec.head) + " is outside the model's " + std::to_string(layers) + " layers × " +
                       std::to_string(heads) + " heads");
    out.push_back(std::move(spec));
  }
  return out;
}

/// Parses a head list without roles (see parseHeadSpecs).
inline std::vector<HeadRef> parseHeadList(const std::string& text, const std::string& what, int layers = 0, int heads = 0) {
  std::vector<HeadRef> out;
  for (const auto& s : parseHeadSpecs(text, what, false, layers, heads)) out.push_back(s.head);
  return out;
}

}  // namespace mechscope
