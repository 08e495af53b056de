#pragma once
// What mechscope-h5check read from a cache, handed to the reader so that mechscope never decodes a cache's
// attributes or variable-length strings itself: those go through libhdf5's attribute and global-heap code,
// where libhdf5 1.10.8 makes wild reads on corrupt files that even an ASan-built checker cannot always see
// (the read is inside uninstrumented libhdf5 and lands on mapped memory there but not here).
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace mechscope::store::isolation {

/// One attribute as the reader shows it.
struct AttributeValue {
  std::string text;                ///< the value as text (numbers formatted, arrays as "[a, b]")
  std::optional<int64_t> integer;  ///< the value when it is one integer
};

/// A variable-length string dataset, read whole.
struct StringData {
  std::vector<int64_t> shape;        ///< dims (empty: a scalar)
  std::vector<std::string> values;   ///< row-major, one per element
};

/// Everything of a cache that lives in attributes and variable-length strings.
struct Manifest {
  /// Object path ("/", "/activations/blocks.0.hook_resid_pre") → attribute name → value.
  std::map<std::string, std::map<std::string, AttributeValue>> attributes;
  /// Dataset path → its strings (variable-length string datasets only).
  std::map<std::string, StringData> strings;

  /// JSON text of this manifest.
  [[nodiscard]] std::string toJson() const;
  /// Parses toJson()'s text; InputError naming `file` when it is not one.
  static Manifest fromJson(const std::string& text, const std::string& file);
};

}  // namespace mechscope::store::isolation
