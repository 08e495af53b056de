#pragma once
// Parsing JSON from untrusted files with limits: nlohmann::json has no depth limit, and its dump(),
// comparison and copy recurse, so a file of a million '[' would overflow the stack later. Every
// loader of a user-supplied JSON file (config.json, tokenizer.json, safetensors headers, JSONL
// datasets) parses through parseJsonGuarded.
#include <cstddef>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

namespace mechscope {

/// Limits on one JSON document.
struct JsonLimits {
  std::size_t maxBytes = 16u << 20;  ///< size of the text
  int maxDepth = 64;                 ///< nesting of arrays/objects
};

/// Limits for config.json-like files (16 MiB, depth 64).
inline constexpr JsonLimits kConfigJsonLimits{16u << 20, 64};
/// Limits for model.safetensors.index.json (64 MiB, depth 64): one weight_map entry per tensor, and a
/// many-expert checkpoint has ~10⁵ tensors (~8 MB of index), past the config cap.
inline constexpr JsonLimits kIndexJsonLimits{64u << 20, 64};
/// Limits for tokenizer.json (256 MiB: the largest Hugging Face tokenizers are ~35 MB; depth 64).
inline constexpr JsonLimits kTokenizerJsonLimits{256u << 20, 64};

/// Throws InputError "`source`: JSON nested deeper than N levels (at byte B)" or "... is N bytes,
/// over the M-byte limit" when `text` breaks `limits`; brackets inside strings do not count.
void checkJsonLimits(std::string_view text, const std::string& source, const JsonLimits& limits);

/// checkJsonLimits, then nlohmann::json::parse; a syntax error becomes an InputError naming `source`.
nlohmann::json parseJsonGuarded(std::string_view text, const std::string& source, const JsonLimits& limits);

/// Reads the whole file (InputError when it cannot be opened or is over limits.maxBytes, checked
/// before reading) and parses it with parseJsonGuarded; errors name the path.
nlohmann::json readJsonFileGuarded(const std::string& path, const JsonLimits& limits);

}  // namespace mechscope
