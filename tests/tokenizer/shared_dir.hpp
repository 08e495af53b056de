#pragma once
// Where the shared fixtures live for tokenizer tests: $MECHSCOPE_SHARED, else MECHSCOPE_SHARED_DIR.
#include <cstdlib>
#include <filesystem>
#include <optional>

namespace mechscope::test {

/// The tokenizer fixtures folder (shared/fixtures/tokenizers), if present.
inline std::optional<std::filesystem::path> tokenizerFixtures() {
  std::filesystem::path base;
  if (const char* env = std::getenv("MECHSCOPE_SHARED"); env && *env) base = env;
#ifdef MECHSCOPE_SHARED_DIR
  else base = MECHSCOPE_SHARED_DIR;
#endif
  const auto dir = base / "fixtures" / "tokenizers";
  std::error_code ec;
  if (base.empty() || !std::filesystem::exists(dir / "reference_encodings.json", ec)) return std::nullopt;
  return dir;
}

}  // namespace mechscope::test
