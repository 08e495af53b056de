#include "store/isolation/structure_walk.hpp"

#include <fmt/format.h>

#include <array>
#include <exception>
#include <optional>
#include <vector>

#include "core/common/errors.hpp"
#include "store/detail/h5_basic.hpp"
#include "store/hdf5_lock.hpp"
#include "store/schema.hpp"

namespace mechscope::store::isolation {

using detail::Hid;

namespace {

// What the walk carries through libhdf5's C callbacks (exceptions must not cross them).
struct WalkState {
  std::string file;
  WalkLimits limits;
  WalkReport report;
  std::optional<std::string> refusal;  // set by a callback; thrown once libhdf5 has returned
};

// The attributes CacheReader asks for by name: H5Aexists on a missing name walks every attribute message,
// a different libhdf5 path from iterating them.
constexpr std::array kNamedAttributes = {schema::kAttrSchemaVersion, schema::kAttrComplete, schema::kAttrLogicalDtype,
                                         schema::kAttrAxes, schema::kAttrHookName};

// Every attribute of `obj`, read as text and as an integer, then the named ones the reader looks up. An
// attribute table libhdf5 cannot list is a refusal: the reader would silently show part of it.
void readAttributes(hid_t obj, const std::string& path, WalkState& st) {
  auto readOne = [&](const std::string& key) {
    try {
      auto text = detail::readAttrAsString(obj, key);
      auto integer = detail::readIntAttr(obj, key);
      if (text) st.report.manifest.attributes[path][key] = AttributeValue{std::move(*text), integer};
      ++st.report.attributes;
    } catch (const InputError&) {
      // A libhdf5 error on a corrupt attribute: it stays out of the manifest, so the reader shows it empty.
    }
  };
  st.report.manifest.attributes[path];  // the object exists, even without attributes
  std::vector<std::string> names;
  try {
    names = detail::attributeNames(obj);
  } catch (const InputError& e) {
    if (!st.refusal)
      st.refusal = fmt::format("cache '{}' is corrupt at '{}': {}", st.file, path, e.what());
  }
  for (const auto& key : names) readOne(key);
  for (const char* key : kNamedAttributes) readOne(key);
}

// Element count of `dims`, or nullopt beyond 2^62 (no read is attempted then).
std::optional<uint64_t> elementCount(const std::vector<int64_t>& dims) {
  uint64_t n = 1;
  for (const int64_t d : dims) {
    if (d < 0) return std::nullopt;
    const auto u = static_cast<uint64_t>(d);
    if (u != 0 && n > (uint64_t{1} << 62) / u) return std::nullopt;
    n *= u;
  }
  return n;
}

// Refuses data that lives outside the file: reading it would make libhdf5 open other files.
void refuseOutsideStorage(hid_t dcpl, const std::string& path, WalkState& st) {
  if (H5Pget_layout(dcpl) == H5D_VIRTUAL)
    st.refusal = fmt::format("cache '{}': dataset '{}' is a virtual dataset (its data lives in other files); "
                             "mechscope caches never are, so it is refused",
                             st.file, path);
  else if (H5Pget_external_count(dcpl) > 0)
    st.refusal = fmt::format("cache '{}': dataset '{}' keeps its data in external files; mechscope caches never do, "
                             "so it is refused",
                             st.file, path);
}

// Lists the chunk index entry by entry (reads decode only the chunks they touch; this decodes the index).
void listChunks(hid_t dset, const WalkState& st) {
  hsize_t n = 0;
  if (H5Dget_num_chunks(dset, H5S_ALL, &n) < 0) return;
  const hsize_t limit = std::min<hsize_t>(n, st.limits.maxChunksListed);
  std::vector<hsize_t> offset(32);
  for (hsize_t i = 0; i < limit; ++i) {
    unsigned mask = 0;
    haddr_t addr = 0;
    hsize_t size = 0;
    if (H5Dget_chunk_info(dset, H5S_ALL, i, offset.data(), &mask, &addr, &size) < 0) return;
  }
}

// Reads the selection `start`/`count` of `dset` (whole dataset when `start` is empty) as `memType`.
void readSelection(hid_t dset, hid_t memType, size_t elementSize, const std::vector<hsize_t>& start,
                   const std::vector<hsize_t>& count, uint64_t elements, WalkState& st) {
  if (elements == 0) return;
  Hid fileSpace(H5Dget_space(dset));
  if (!fileSpace.valid()) return;
  Hid memSpace;
  hid_t fileSel = H5S_ALL, memSel = H5S_ALL;
  if (!start.empty()) {
    if (H5Sselect_hyperslab(fileSpace.get(), H5S_SELECT_SET, start.data(), nullptr, count.data(), nullptr) < 0) return;
    memSpace = Hid(H5Screate_simple(static_cast<int>(count.size()), count.data(), nullptr));
    if (!memSpace.valid()) return;
    fileSel = fileSpace.get();
    memSel = memSpace.get();
  }
  std::vector<unsigned char> buf(static_cast<size_t>(elements) * elementSize);
  if (H5Dread(dset, memType, memSel, fileSel, H5P_DEFAULT, buf.data()) >= 0) st.report.bytesRead += buf.size();
}

// A variable-length string dataset, read whole into the manifest (the reader takes its strings from there).
void readStrings(hid_t dset, const std::string& path, const std::vector<int64_t>& dims, uint64_t count, WalkState& st) {
  if (count > st.limits.maxStrings) return;  // left out: the reader refuses to show it
  std::vector<char*> ptrs(static_cast<size_t>(count), nullptr);
  Hid mtype = detail::vlenStringType();
  if (count > 0 && H5Dread(dset, mtype.get(), H5S_ALL, H5S_ALL, H5P_DEFAULT, ptrs.data()) < 0) return;
  StringData data{dims, {}};
  data.values.reserve(ptrs.size());
  for (char*& p : ptrs) {
    data.values.emplace_back(p ? p : "");
    if (p) H5free_memory(p);
  }
  st.report.bytesRead += count * sizeof(char*);
  st.report.manifest.strings[path] = std::move(data);
}

// Reads a dataset's data the ways CacheReader does: whole, its first row, and (when too big to read
// whole) its first and last element. Variable-length strings: whole, into the manifest.
void readData(hid_t dset, const std::string& path, const std::vector<int64_t>& dims, WalkState& st) {
  Hid ftype(H5Dget_type(dset));
  if (!ftype.valid()) return;
  const H5T_class_t cls = H5Tget_class(ftype.get());
  const bool vlenString = cls == H5T_STRING && H5Tis_variable_str(ftype.get()) > 0;
  if (cls != H5T_INTEGER && cls != H5T_FLOAT && cls != H5T_STRING) return;  // the reader refuses other types unread
  const auto total = elementCount(dims);
  if (!total) return;
  if (vlenString) {
    readStrings(dset, path, dims, *total, st);
    return;
  }
  Hid memType(H5Tcopy(ftype.get()));  // the file's own type: no conversion
  if (!memType.valid()) return;
  const size_t elementSize = H5Tget_size(ftype.get());
  if (elementSize == 0) return;
  const uint64_t cap = st.limits.maxReadBytes / elementSize;
  if (*total <= cap) readSelection(dset, memType.get(), elementSize, {}, {}, *total, st);
  if (dims.empty() || dims[0] == 0 || *total == 0) return;
  std::vector<hsize_t> start(dims.size(), 0), count(dims.begin(), dims.end());
  count[0] = 1;  // the first row, as readSlice({SliceRange::at(0)}) selects it
  if (*total / static_cast<uint64_t>(dims[0]) <= cap)
    readSelection(dset, memType.get(), elementSize, start, count, *total / static_cast<uint64_t>(dims[0]), st);
  if (*total <= cap) return;
  std::vector<hsize_t> one(dims.size(), 1), last(dims.size());
  for (size_t i = 0; i < dims.size(); ++i) last[i] = static_cast<hsize_t>(dims[i] - 1);
  readSelection(dset, memType.get(), elementSize, start, one, 1, st);
  readSelection(dset, memType.get(), elementSize, last, one, 1, st);
}

// Describes a dataset as CacheReader::describe and validateDataset do, then reads its data.
void walkDataset(hid_t dset, const std::string& path, WalkState& st) {
  ++st.report.datasets;
  Hid dcpl(H5Dget_create_plist(dset));
  if (dcpl.valid()) {
    refuseOutsideStorage(dcpl.get(), path, st);
    if (st.refusal) return;
    (void)H5Pget_nfilters(dcpl.get());
  }
  std::vector<int64_t> dims;
  {
    Hid space(H5Dget_space(dset));
    if (!space.valid()) return;
    dims = detail::spaceDims(space.get());
  }
  std::vector<int64_t> chunks;
  try {
    chunks = detail::chunkDims(dset);
    (void)detail::filterDescription(dset);
  } catch (const Error&) {
  }
  (void)H5Dget_storage_size(dset);
  if (!chunks.empty()) listChunks(dset, st);
  readData(dset, path, dims, st);
}

// One object (group or dataset) reached by a hard link.
void walkObject(hid_t obj, const std::string& path, WalkState& st) {
  ++st.report.objects;
  readAttributes(obj, path, st);
  if (H5Iget_type(obj) == H5I_DATASET) walkDataset(obj, path, st);
}

herr_t visitLink(hid_t group, const char* name, const H5L_info_t* info, void* data) {
  auto& st = *static_cast<WalkState*>(data);
  const std::string path = std::string("/") + name;
  if (info->type == H5L_TYPE_EXTERNAL || info->type >= H5L_TYPE_UD_MIN) {
    st.refusal = fmt::format("cache '{}': '{}' is {} link (it points into another file); mechscope caches "
                             "never link other files, so it is refused",
                             st.file, path, info->type == H5L_TYPE_EXTERNAL ? "an external" : "a user-defined");
    return 1;  // stop the visit
  }
  if (info->type != H5L_TYPE_HARD) return 0;  // soft links name objects reached through their hard links
  try {
    Hid obj(H5Oopen(group, name, H5P_DEFAULT));
    if (!obj.valid()) {
      st.refusal = fmt::format("cache '{}' is corrupt: '{}' cannot be opened ({})", st.file, path, detail::errorStack());
      return 1;
    }
    walkObject(obj.get(), path, st);
  } catch (const std::exception&) {
    // libhdf5 errors are the reader's to report; keep walking.
  }
  return st.refusal ? 1 : 0;
}

}  // namespace

WalkReport walkCacheFile(const std::string& path, const WalkLimits& limits) {
  Hdf5Lock lock;
  WalkState st{path, limits, {}, std::nullopt};
  if (H5Fis_hdf5(path.c_str()) <= 0) return st.report;
  Hid file(H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT));
  if (!file.valid()) return st.report;
  st.report.opened = true;
  {
    Hid root(H5Oopen(file.get(), "/", H5P_DEFAULT));
    if (root.valid()) walkObject(root.get(), "/", st);
  }
  if (H5Lvisit(file.get(), H5_INDEX_NAME, H5_ITER_INC, visitLink, &st) < 0 && !st.refusal)
    st.refusal = fmt::format("cache '{}' is corrupt: its groups cannot be listed ({})", path, detail::errorStack());
  if (st.refusal) throw InputError(*st.refusal);
  return st.report;
}

}  // namespace mechscope::store::isolation
