#pragma once
// The parameter values of one analysis run, by plan key, as the text a CLI option takes ("0.5",
// "9.9,10.0", "3:7"); a list-valued option keeps one text per occurrence. The CLI fills it from its
// options, the GUI from its form, and a plugin reads typed values through the descriptor's table, which
// supplies defaults and ranges. Standard library only.
#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "analysis/common/registry.hpp"
#include "core/common/head_ref.hpp"

namespace mechscope::analysis {

/// "1,-1, 3" → {1, -1, 3}; InputError naming `what` and quoting the whole list when an item is empty or not an integer.
std::vector<int64_t> parseIntegerList(const std::string& text, const std::string& what);

/// "a:b" → (a, b) (two integers, any order); InputError naming `what` otherwise.
std::pair<int64_t, int64_t> parseRangeText(const std::string& text, const std::string& what);

/// Parameter values of one run of the analysis `descriptor` (which must outlive this object).
class ParamValues {
 public:
  /// Values for the analysis described by `descriptor`.
  explicit ParamValues(const AnalysisDescriptor& descriptor) : m_descriptor(&descriptor) {}

  /// Sets `key` to one text (InputError when the table has no such key).
  void set(const std::string& key, std::string text);
  /// Sets `key` to several texts (a repeated option).
  void setList(const std::string& key, std::vector<std::string> texts);
  /// Parses every given value by its type (and range): InputError naming the option for the first bad one.
  /// Front ends call it before any compute.
  void check() const;
  /// Whether `key` was given or has a default.
  [[nodiscard]] bool has(const std::string& key) const;
  /// Whether `key` was given explicitly.
  [[nodiscard]] bool given(const std::string& key) const { return m_values.count(key) > 0; }

  /// The value as text (the given one, else the default; InputError when neither).
  [[nodiscard]] std::string text(const std::string& key) const;
  /// Every text of a repeated option (empty when not given and no default).
  [[nodiscard]] std::vector<std::string> texts(const std::string& key) const;
  /// An Int parameter, range-checked against the table.
  [[nodiscard]] int64_t integer(const std::string& key) const;
  /// A Float parameter, range-checked against the table.
  [[nodiscard]] double number(const std::string& key) const;
  /// A Bool parameter ("true"/"false"/"1"/"0"; not given and no default: false).
  [[nodiscard]] bool flag(const std::string& key) const;
  /// A HeadList parameter, checked against a model of `layers` × `heads`.
  [[nodiscard]] std::vector<HeadRef> heads(const std::string& key, int layers, int heads) const;
  /// A HeadList parameter with roles (LAYER.HEAD@ROLE, when the table's `roles` allows them).
  std::vector<HeadSpec> headSpecs(const std::string& key, int layers, int heads) const;
  /// An IntList parameter ("1,-1" or repeated texts).
  [[nodiscard]] std::vector<int64_t> integers(const std::string& key) const;
  /// A Range parameter "a:b".
  [[nodiscard]] std::pair<int64_t, int64_t> range(const std::string& key) const;

  /// The descriptor the values belong to.
  [[nodiscard]] const AnalysisDescriptor& descriptor() const { return *m_descriptor; }
  /// The given values (what the result's "params" object records).
  [[nodiscard]] const std::map<std::string, std::vector<std::string>>& values() const { return m_values; }

 private:
  const ParamInfo& info(const std::string& key) const;
  std::string option(const std::string& key) const;  // "--flag" or the key, for messages
  const AnalysisDescriptor* m_descriptor;
  std::map<std::string, std::vector<std::string>> m_values;
};

}  // namespace mechscope::analysis
