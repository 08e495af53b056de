#include "core/common/json_guard.hpp"

#include <filesystem>
#include <fstream>
#include <sstream>

#include <fmt/format.h>

#include "core/common/errors.hpp"

namespace mechscope {

void checkJsonLimits(std::string_view text, const std::string& source, const JsonLimits& limits) {
  if (text.size() > limits.maxBytes)
    throw InputError(fmt::format("{}: JSON is {} bytes, over the {}-byte limit", source, text.size(), limits.maxBytes));
  int depth = 0;
  bool inString = false;
  for (std::size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (inString) {
      if (c == '\\') ++i;  // skip the escaped character (\" does not end the string)
      else if (c == '"') inString = false;
      continue;
    }
    if (c == '"') {
      inString = true;
    } else if (c == '[' || c == '{') {
      if (++depth > limits.maxDepth)
        throw InputError(fmt::format("{}: JSON nested deeper than {} levels (at byte {})", source, limits.maxDepth, i));
    } else if ((c == ']' || c == '}') && depth > 0) {
      --depth;
    }
  }
}

nlohmann::json parseJsonGuarded(std::string_view text, const std::string& source, const JsonLimits& limits) {
  checkJsonLimits(text, source, limits);
  try {
    return nlohmann::json::parse(text.begin(), text.end());
  } catch (const nlohmann::json::exception& e) {
    throw InputError(fmt::format("{}: malformed JSON ({})", source, e.what()));
  }
}

nlohmann::json readJsonFileGuarded(const std::string& path, const JsonLimits& limits) {
  std::error_code ec;
  const auto size = std::filesystem::file_size(path, ec);
  if (!ec && size > limits.maxBytes)
    throw InputError(fmt::format("{}: JSON is {} bytes, over the {}-byte limit", path, size, limits.maxBytes));
  std::ifstream in(path, std::ios::binary);
  if (!in) throw InputError(fmt::format("{}: cannot open", path));
  std::ostringstream ss;
  ss << in.rdbuf();
  return parseJsonGuarded(ss.str(), path, limits);
}

}  // namespace mechscope
