#pragma once
// Small typed accessors over nlohmann::json that throw InputError naming the component and the key.
#include <string>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "core/common/errors.hpp"

namespace mechscope::tok {

/// Required string member `key` of `j`.
inline std::string jsonString(const nlohmann::json& j, const char* key, const std::string& where) {
  const auto it = j.find(key);
  if (it == j.end() || !it->is_string())
    throw InputError(fmt::format("{}: expected a string \"{}\", found {}", where, key,
                                 it == j.end() ? std::string("nothing") : std::string(it->type_name())));
  return it->get<std::string>();
}
/// Optional boolean member (`fallback` when absent or null).
inline bool jsonBool(const nlohmann::json& j, const char* key, bool fallback, const std::string& where) {
  const auto it = j.find(key);
  if (it == j.end() || it->is_null()) return fallback;
  if (!it->is_boolean())
    throw InputError(fmt::format("{}: expected \"{}\" to be true/false, found {}", where, key, it->type_name()));
  return it->get<bool>();
}
/// Optional unsigned member (`fallback` when absent or null).
inline size_t jsonSize(const nlohmann::json& j, const char* key, size_t fallback, const std::string& where) {
  const auto it = j.find(key);
  if (it == j.end() || it->is_null()) return fallback;
  if (!it->is_number_unsigned() && !(it->is_number_integer() && it->get<long long>() >= 0))
    throw InputError(fmt::format("{}: expected \"{}\" to be a non-negative integer, found {}", where, key, it->type_name()));
  return it->get<size_t>();
}
/// Required array member.
inline const nlohmann::json& jsonArray(const nlohmann::json& j, const char* key, const std::string& where) {
  const auto it = j.find(key);
  if (it == j.end() || !it->is_array())
    throw InputError(fmt::format("{}: expected an array \"{}\", found {}", where, key,
                                 it == j.end() ? std::string("nothing") : std::string(it->type_name())));
  return *it;
}

}  // namespace mechscope::tok
