#include "store/isolation/manifest.hpp"

#include <nlohmann/json.hpp>

#include "core/common/errors.hpp"

namespace mechscope::store::isolation {

std::string Manifest::toJson() const {
  nlohmann::json j;
  j["attributes"] = nlohmann::json::object();
  for (const auto& [path, attrs] : attributes) {
    nlohmann::json a = nlohmann::json::object();
    for (const auto& [name, v] : attrs) {
      a[name] = {{"text", v.text}};
      if (v.integer) a[name]["int"] = *v.integer;
    }
    j["attributes"][path] = std::move(a);
  }
  j["strings"] = nlohmann::json::object();
  for (const auto& [path, s] : strings) j["strings"][path] = {{"shape", s.shape}, {"values", s.values}};
  // Strings from a corrupt file need not be UTF-8: replace what is not, rather than fail.
  return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

Manifest Manifest::fromJson(const std::string& text, const std::string& file) {
  try {
    const auto j = nlohmann::json::parse(text);
    Manifest m;
    for (const auto& [path, attrs] : j.at("attributes").items())
      for (const auto& [name, v] : attrs.items()) {
        AttributeValue a;
        a.text = v.at("text").get<std::string>();
        if (v.contains("int")) a.integer = v.at("int").get<int64_t>();
        m.attributes[path][name] = std::move(a);
      }
    for (const auto& [path, s] : j.at("strings").items())
      m.strings[path] = StringData{s.at("shape").get<std::vector<int64_t>>(), s.at("values").get<std::vector<std::string>>()};
    return m;
  } catch (const nlohmann::json::exception& e) {
    throw InputError("cache '" + file + "': mechscope-h5check's account of it is unreadable (" + e.what() + ")");
  }
}

}  // namespace mechscope::store::isolation
