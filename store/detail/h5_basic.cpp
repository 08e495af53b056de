#include "store/detail/h5_basic.hpp"

#include <fmt/format.h>

#include <cstring>

#include "core/common/errors.hpp"
#include "store/hdf5_lock.hpp"

namespace mechscope::store::detail {

void Hid::reset() noexcept {
  if (m_id < 0) return;
  Hdf5Lock lock;
  if (H5Iis_valid(m_id) > 0) H5Idec_ref(m_id);
  m_id = H5I_INVALID_HID;
}

namespace {
herr_t collectError(unsigned, const H5E_error2_t* err, void* data) {
  auto* out = static_cast<std::vector<std::string>*>(data);
  if (err && err->desc && *err->desc) out->emplace_back(err->desc);
  return 0;
}
}  // namespace

std::string errorStack() {
  std::vector<std::string> messages;
  H5Ewalk2(H5E_DEFAULT, H5E_WALK_UPWARD, collectError, &messages);
  H5Eclear2(H5E_DEFAULT);
  if (messages.empty()) return "libhdf5 gave no detail";
  // Upward: innermost (most specific) first. Keep the two most specific distinct messages.
  std::string out = messages.front();
  for (size_t i = 1; i < messages.size(); ++i) {
    if (messages[i] != messages.front()) {
      out += "; " + messages[i];
      break;
    }
  }
  return out;
}

Hid own(hid_t id, const std::string& what, bool input) {
  if (id < 0) {
    if (input) throw InputError(what + ": " + errorStack());
    throw Error(what + ": " + errorStack());
  }
  return Hid(id);
}

Hid vlenStringType() {
  Hid t = own(H5Tcopy(H5T_C_S1), "string type");
  H5Tset_size(t.get(), H5T_VARIABLE);
  H5Tset_cset(t.get(), H5T_CSET_UTF8);
  return t;
}

bool linkExists(hid_t file, const std::string& path) {
  if (path.empty() || path == "/") return true;
  std::string cur;
  size_t start = path[0] == '/' ? 1 : 0;
  while (start <= path.size()) {
    size_t end = path.find('/', start);
    if (end == std::string::npos) end = path.size();
    cur.push_back('/');
    cur.append(path, start, end - start);
    if (H5Lexists(file, cur.c_str(), H5P_DEFAULT) <= 0) return false;
    start = end + 1;
  }
  return true;
}

void ensureGroups(hid_t file, const std::string& path) {
  std::string cur;
  size_t start = !path.empty() && path[0] == '/' ? 1 : 0;
  while (start < path.size()) {
    size_t end = path.find('/', start);
    if (end == std::string::npos) end = path.size();
    if (end > start) {
      cur.push_back('/');
      cur.append(path, start, end - start);
      if (H5Lexists(file, cur.c_str(), H5P_DEFAULT) <= 0) {
        own(H5Gcreate2(file, cur.c_str(), H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT), "create group " + cur);
      }
    }
    start = end + 1;
  }
}

namespace {
Hid openObject(hid_t file, const std::string& objPath) {
  return own(H5Oopen(file, objPath.c_str(), H5P_DEFAULT), "open " + objPath);
}

Hid recreateAttr(hid_t obj, const std::string& key, hid_t type) {
  if (H5Aexists(obj, key.c_str()) > 0) H5Adelete(obj, key.c_str());
  Hid space = own(H5Screate(H5S_SCALAR), "scalar space");
  return own(H5Acreate2(obj, key.c_str(), type, space.get(), H5P_DEFAULT, H5P_DEFAULT), "create attribute " + key);
}
}  // namespace

void writeStringAttr(hid_t file, const std::string& objPath, const std::string& key, const std::string& value) {
  Hid obj = openObject(file, objPath);
  Hid type = vlenStringType();
  Hid attr = recreateAttr(obj.get(), key, type.get());
  const char* ptr = value.c_str();
  check<Error>(H5Awrite(attr.get(), type.get(), &ptr), "write attribute " + key);
}

void writeIntAttr(hid_t file, const std::string& objPath, const std::string& key, int64_t value) {
  Hid obj = openObject(file, objPath);
  Hid attr = recreateAttr(obj.get(), key, H5T_STD_I64LE);
  check<Error>(H5Awrite(attr.get(), H5T_NATIVE_INT64, &value), "write attribute " + key);
}

void writeDoubleAttr(hid_t file, const std::string& objPath, const std::string& key, double value) {
  Hid obj = openObject(file, objPath);
  Hid attr = recreateAttr(obj.get(), key, H5T_IEEE_F64LE);
  check<Error>(H5Awrite(attr.get(), H5T_NATIVE_DOUBLE, &value), "write attribute " + key);
}

std::optional<std::string> readAttrAsString(hid_t obj, const std::string& key) {
  if (H5Aexists(obj, key.c_str()) <= 0) return std::nullopt;
  Hid attr = own(H5Aopen(obj, key.c_str(), H5P_DEFAULT), "open attribute " + key, true);
  Hid type = own(H5Aget_type(attr.get()), "attribute type " + key, true);
  Hid space = own(H5Aget_space(attr.get()), "attribute space " + key, true);
  const hssize_t n = H5Sget_simple_extent_npoints(space.get());
  if (n <= 0) return std::string();
  const H5T_class_t cls = H5Tget_class(type.get());
  if (cls == H5T_STRING) {
    if (n != 1) return std::string("<string array>");
    if (H5Tis_variable_str(type.get()) > 0) {
      char* ptr = nullptr;
      check<InputError>(H5Aread(attr.get(), type.get(), &ptr), "read attribute " + key);
      std::string out = ptr ? ptr : "";
      if (ptr) H5free_memory(ptr);
      return out;
    }
    const size_t size = H5Tget_size(type.get());
    std::string buf(size, '\0');
    check<InputError>(H5Aread(attr.get(), type.get(), buf.data()), "read attribute " + key);
    buf.resize(std::strlen(buf.c_str()));
    return buf;
  }
  if (cls == H5T_INTEGER || cls == H5T_FLOAT) {
    std::vector<std::string> parts;
    if (cls == H5T_INTEGER) {
      std::vector<int64_t> v(static_cast<size_t>(n));
      check<InputError>(H5Aread(attr.get(), H5T_NATIVE_INT64, v.data()), "read attribute " + key);
      for (auto x : v) parts.push_back(std::to_string(x));
    } else {
      std::vector<double> v(static_cast<size_t>(n));
      check<InputError>(H5Aread(attr.get(), H5T_NATIVE_DOUBLE, v.data()), "read attribute " + key);
      for (auto x : v) parts.push_back(fmt::format("{}", x));
    }
    if (n == 1) return parts.front();
    return fmt::format("[{}]", fmt::join(parts, ", "));
  }
  return std::string("<unsupported attribute type>");
}

std::optional<int64_t> readIntAttr(hid_t obj, const std::string& key) {
  if (H5Aexists(obj, key.c_str()) <= 0) return std::nullopt;
  Hid attr = own(H5Aopen(obj, key.c_str(), H5P_DEFAULT), "open attribute " + key, true);
  Hid type = own(H5Aget_type(attr.get()), "attribute type " + key, true);
  if (H5Tget_class(type.get()) != H5T_INTEGER) return std::nullopt;
  Hid space = own(H5Aget_space(attr.get()), "attribute space " + key, true);
  if (H5Sget_simple_extent_npoints(space.get()) != 1) return std::nullopt;
  int64_t v = 0;
  check<InputError>(H5Aread(attr.get(), H5T_NATIVE_INT64, &v), "read attribute " + key);
  return v;
}

namespace {
herr_t collectAttrName(hid_t, const char* name, const H5A_info_t*, void* data) {
  static_cast<std::vector<std::string>*>(data)->emplace_back(name);
  return 0;
}
}  // namespace

std::vector<std::string> attributeNames(hid_t obj) {
  std::vector<std::string> names;
  hsize_t idx = 0;
  if (H5Aiterate2(obj, H5_INDEX_NAME, H5_ITER_INC, &idx, collectAttrName, &names) < 0)
    throw InputError("attribute table cannot be listed: " + errorStack());
  return names;
}

std::vector<int64_t> spaceDims(hid_t space) {
  const int rank = H5Sget_simple_extent_ndims(space);
  if (rank <= 0) return {};
  std::vector<hsize_t> dims(static_cast<size_t>(rank));
  H5Sget_simple_extent_dims(space, dims.data(), nullptr);
  return {dims.begin(), dims.end()};
}

std::vector<int64_t> chunkDims(hid_t dset) {
  Hid dcpl = own(H5Dget_create_plist(dset), "dataset creation plist");
  if (H5Pget_layout(dcpl.get()) != H5D_CHUNKED) return {};
  const int rank = H5Pget_chunk(dcpl.get(), 0, nullptr);
  if (rank <= 0) return {};
  std::vector<hsize_t> dims(static_cast<size_t>(rank));
  H5Pget_chunk(dcpl.get(), rank, dims.data());
  return {dims.begin(), dims.end()};
}

std::string filterDescription(hid_t dset) {
  Hid dcpl = own(H5Dget_create_plist(dset), "dataset creation plist");
  const int n = H5Pget_nfilters(dcpl.get());
  std::vector<std::string> parts;
  for (int i = 0; i < n; ++i) {
    unsigned flags = 0, config = 0;
    size_t nelem = 4;
    unsigned values[4] = {0, 0, 0, 0};
    char name[64] = {0};
    const H5Z_filter_t f = H5Pget_filter2(dcpl.get(), static_cast<unsigned>(i), &flags, &nelem, values, sizeof name,
                                          name, &config);
    if (f == H5Z_FILTER_DEFLATE) parts.push_back(fmt::format("gzip {}", nelem > 0 ? values[0] : 0));
    else if (f == H5Z_FILTER_SHUFFLE) parts.emplace_back("shuffle");
    else parts.emplace_back(name[0] ? name : fmt::format("filter {}", f));
  }
  if (parts.empty()) return "none";
  return fmt::format("{}", fmt::join(parts, " + "));
}

}  // namespace mechscope::store::detail
