#include "store/slice.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <charconv>

#include "core/common/errors.hpp"

namespace mechscope::store {
namespace {

std::string trim(const std::string& s) {
  const auto b = s.find_first_not_of(" \t");
  if (b == std::string::npos) return {};
  const auto e = s.find_last_not_of(" \t");
  return s.substr(b, e - b + 1);
}

std::optional<int64_t> parseInt(const std::string& part, const std::string& text) {
  const std::string t = trim(part);
  if (t.empty()) return std::nullopt;
  int64_t v = 0;
  const char* first = t.data();
  if (*first == '+') ++first;
  auto [ptr, ec] = std::from_chars(first, t.data() + t.size(), v);
  if (ec != std::errc() || ptr != t.data() + t.size())
    throw InputError(fmt::format("slice '{}': expected an integer, got '{}'", text, t));
  return v;
}

}  // namespace

std::vector<SliceRange> parseSlice(const std::string& text) {
  std::vector<SliceRange> out;
  if (trim(text).empty()) return out;
  size_t start = 0;
  while (true) {
    const size_t comma = text.find(',', start);
    const std::string item = trim(text.substr(start, comma == std::string::npos ? std::string::npos : comma - start));
    if (item.empty()) throw InputError(fmt::format("slice '{}': empty item (use ':' for a whole dimension)", text));
    const size_t c1 = item.find(':');
    if (c1 == std::string::npos) {
      out.push_back(SliceRange::at(*parseInt(item, text)));
    } else {
      const size_t c2 = item.find(':', c1 + 1);
      if (c2 != std::string::npos && item.find(':', c2 + 1) != std::string::npos)
        throw InputError(fmt::format("slice '{}': '{}' has more than two ':'", text, item));
      SliceRange r;
      r.start = parseInt(item.substr(0, c1), text).value_or(0);
      r.stop = parseInt(item.substr(c1 + 1, c2 == std::string::npos ? std::string::npos : c2 - c1 - 1), text);
      if (c2 != std::string::npos) r.step = parseInt(item.substr(c2 + 1), text).value_or(1);
      if (r.step < 1) throw InputError(fmt::format("slice '{}': step must be ≥ 1, got {}", text, r.step));
      out.push_back(r);
    }
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  return out;
}

std::vector<ResolvedRange> resolveSlice(const std::vector<SliceRange>& ranges, const std::vector<int64_t>& shape,
                                        const std::string& what) {
  if (ranges.size() > shape.size())
    throw InputError(fmt::format("{}: slice has {} dimensions, the dataset has {} (shape [{}])", what, ranges.size(),
                                 shape.size(), fmt::join(shape, ", ")));
  std::vector<ResolvedRange> out;
  out.reserve(shape.size());
  for (size_t d = 0; d < shape.size(); ++d) {
    const int64_t n = shape[d];
    const SliceRange r = d < ranges.size() ? ranges[d] : SliceRange::all();
    if (r.step < 1) throw InputError(fmt::format("{}: dimension {} step must be ≥ 1, got {}", what, d, r.step));
    if (r.index) {
      const int64_t i = r.start < 0 ? r.start + n : r.start;
      if (i < 0 || i >= n)
        throw InputError(fmt::format("{}: index {} is out of range for dimension {} of size {}", what, r.start, d, n));
      out.push_back({i, 1, 1, true});
      continue;
    }
    auto clampPos = [n](int64_t v) { return std::clamp<int64_t>(v < 0 ? v + n : v, 0, n); };
    const int64_t a = clampPos(r.start);
    const int64_t b = r.stop ? clampPos(*r.stop) : n;
    const int64_t count = b > a ? (b - a + r.step - 1) / r.step : 0;
    out.push_back({a, count, r.step, false});
  }
  return out;
}

}  // namespace mechscope::store
