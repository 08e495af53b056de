#include "analysis/common/param_values.hpp"

#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>

#include "core/common/errors.hpp"

namespace mechscope::analysis {

namespace {
std::string trim(const std::string& s) {
  const size_t a = s.find_first_not_of(" \t"), b = s.find_last_not_of(" \t");
  return a == std::string::npos ? std::string() : s.substr(a, b - a + 1);
}

/// A bound as a person writes it: 1, 0.5, 1e+09.
std::string boundText(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%g", v);
  return buf;
}

/// "is outside [0, 1]", "is below the minimum 0", "is above the maximum 100" (open ends are ±1e300).
std::string rangeMessage(const ParamInfo& p) {
  if (p.maximum >= 1e300) return "is below the minimum " + boundText(p.minimum);
  if (p.minimum <= -1e300) return "is above the maximum " + boundText(p.maximum);
  return "is outside [" + boundText(p.minimum) + ", " + boundText(p.maximum) + "]";
}

int64_t parseInteger(const std::string& text, const std::string& what) {
  const std::string t = trim(text);
  char* end = nullptr;
  errno = 0;
  const long long v = std::strtoll(t.c_str(), &end, 10);
  if (t.empty() || *end != '\0' || errno == ERANGE) throw InputError(what + ": '" + text + "' is not an integer");
  return v;
}
}  // namespace

const ParamInfo& ParamValues::info(const std::string& key) const {
  const ParamInfo* p = findParam(m_descriptor->params, key);
  if (!p) throw InputError(m_descriptor->name + ": no parameter '" + key + "'");
  return *p;
}

std::string ParamValues::option(const std::string& key) const {
  const ParamInfo& p = info(key);
  return m_descriptor->name + " " + (p.flag.empty() ? key : p.flag);
}

void ParamValues::set(const std::string& key, std::string text) { setList(key, {std::move(text)}); }

void ParamValues::setList(const std::string& key, std::vector<std::string> texts) {
  const ParamInfo& p = info(key);
  if (p.type == ParamType::Choice)
    for (const auto& t : texts) {
      bool ok = false;
      for (const auto& c : p.choices) ok = ok || c == t;
      if (!ok) {
        std::string list;
        for (const auto& c : p.choices) list += (list.empty() ? "" : ", ") + c;
        throw InputError(option(key) + ": '" + t + "' is not one of " + list);
      }
    }
  m_values[key] = std::move(texts);
}

void ParamValues::check() const {
  for (const auto& [key, texts] : m_values) {
    switch (info(key).type) {
      case ParamType::Int: (void)integer(key); break;
      case ParamType::Float: (void)number(key); break;
      case ParamType::Bool: (void)flag(key); break;
      case ParamType::HeadList: (void)headSpecs(key, 0, 0); break;
      case ParamType::IntList: (void)integers(key); break;
      case ParamType::Range: (void)range(key); break;
      case ParamType::RangeList:
        for (const auto& t : texts) (void)parseRangeText(t, option(key));
        break;
      default: break;
    }
  }
}

bool ParamValues::has(const std::string& key) const { return given(key) || !info(key).defaultValue.empty(); }

std::string ParamValues::text(const std::string& key) const {
  const auto it = m_values.find(key);
  if (it != m_values.end() && !it->second.empty()) {
    std::string joined;
    for (const auto& t : it->second) joined += (joined.empty() ? "" : ",") + t;
    return joined;
  }
  const ParamInfo& p = info(key);
  if (p.defaultValue.empty() && p.type != ParamType::String && p.type != ParamType::Bool)
    throw InputError(option(key) + " is required");
  return p.defaultValue;
}

std::vector<std::string> ParamValues::texts(const std::string& key) const {
  const auto it = m_values.find(key);
  if (it != m_values.end()) return it->second;
  const ParamInfo& p = info(key);
  return p.defaultValue.empty() ? std::vector<std::string>{} : std::vector<std::string>{p.defaultValue};
}

int64_t ParamValues::integer(const std::string& key) const {
  const ParamInfo& p = info(key);
  const int64_t v = parseInteger(text(key), option(key));
  if (static_cast<double>(v) < p.minimum || static_cast<double>(v) > p.maximum)
    throw InputError(option(key) + ": " + std::to_string(v) + " " + rangeMessage(p));
  return v;
}

double ParamValues::number(const std::string& key) const {
  const ParamInfo& p = info(key);
  const std::string t = trim(text(key));
  char* end = nullptr;
  const double v = std::strtod(t.c_str(), &end);
  if (t.empty() || *end != '\0' || !std::isfinite(v)) throw InputError(option(key) + ": '" + t + "' is not a number");
  if (v < p.minimum || v > p.maximum)
    throw InputError(option(key) + ": " + t + " " + rangeMessage(p));
  return v;
}

bool ParamValues::flag(const std::string& key) const {
  const std::string t = trim(text(key));
  if (t.empty() || t == "false" || t == "0") return false;
  if (t == "true" || t == "1") return true;
  throw InputError(option(key) + ": '" + t + "' is not true or false");
}

std::vector<HeadRef> ParamValues::heads(const std::string& key, int layers, int heads) const {
  return parseHeadList(text(key), option(key), layers, heads);
}

std::vector<HeadSpec> ParamValues::headSpecs(const std::string& key, int layers, int heads) const {
  return parseHeadSpecs(text(key), option(key), info(key).roles, layers, heads);
}

std::vector<int64_t> parseIntegerList(const std::string& t, const std::string& what) {
  std::vector<int64_t> out;
  size_t start = 0;
  while (start <= t.size()) {
    size_t end = t.find(',', start);
    if (end == std::string::npos) end = t.size();
    try {
      out.push_back(parseInteger(t.substr(start, end - start), what));  // an empty item is an error too ("1,,2", "1,")
    } catch (const InputError&) {
      throw InputError(what + ": '" + t + "' is not a comma-separated list of integers");
    }
    start = end + 1;
  }
  return out;
}

std::vector<int64_t> ParamValues::integers(const std::string& key) const {
  std::vector<int64_t> out;
  for (const auto& t : texts(key))
    for (int64_t v : parseIntegerList(t, option(key))) out.push_back(v);
  return out;
}

std::pair<int64_t, int64_t> parseRangeText(const std::string& t, const std::string& what) {
  const size_t colon = t.find(':');
  const std::string message = what + ": expected START:END (two integers), found '" + t + "'";
  if (colon == std::string::npos) throw InputError(message);
  try {
    return {parseInteger(t.substr(0, colon), what), parseInteger(t.substr(colon + 1), what)};
  } catch (const InputError&) {
    throw InputError(message);
  }
}

std::pair<int64_t, int64_t> ParamValues::range(const std::string& key) const { return parseRangeText(text(key), option(key)); }

}  // namespace mechscope::analysis
