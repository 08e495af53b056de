#include "store/cache_reader.hpp"

#include <ATen/ATen.h>

#include <fnmatch.h>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <cstdint>

#include "core/common/errors.hpp"
#include "store/detail/h5_util.hpp"
#include "store/hdf5_lock.hpp"
#include "store/hook_axes.hpp"
#include "store/isolation/isolated_check.hpp"
#include "store/isolation/structure_walk.hpp"
#include "store/masked_tiles.hpp"
#include "store/schema.hpp"

namespace mechscope::store {

namespace detail {
/// The open file of a CacheReader (shared by its copies).
struct ReaderState {
  Hid file;
  std::filesystem::path path;
  int64_t schemaVersion = 0;
  uint64_t fileBytes = 0;  ///< the file's size at open: no dataset can store more
  /// Attributes and variable-length strings, as mechscope-h5check read them: this process never decodes
  /// them (libhdf5's attribute and global-heap code is where corrupt files make it read wildly).
  isolation::Manifest manifest;

  /// The attribute `key` of the object at `obj`, when the checker read one.
  [[nodiscard]] std::optional<isolation::AttributeValue> attribute(const std::string& obj, const std::string& key) const {
    const auto o = manifest.attributes.find(obj);
    if (o == manifest.attributes.end()) return std::nullopt;
    const auto a = o->second.find(key);
    if (a == o->second.end()) return std::nullopt;
    return a->second;
  }
  /// The text of attribute `key` of `obj`, when present.
  [[nodiscard]] std::optional<std::string> attributeText(const std::string& obj, const std::string& key) const {
    const auto a = attribute(obj, key);
    return a ? std::optional<std::string>(a->text) : std::nullopt;
  }
};
}  // namespace detail

using detail::Hid;
using detail::own;

namespace {

// Caller holds the lock.
DatasetInfo describe(const detail::ReaderState& state, const std::string& path) {
  const hid_t file = state.file.get();
  DatasetInfo info;
  info.path = path;
  const std::string prefix = std::string(schema::kActivationsGroup) + "/";
  info.name = path.rfind(prefix, 0) == 0 ? path.substr(prefix.size()) : path;
  Hid dset = own(H5Dopen2(file, path.c_str(), H5P_DEFAULT), "open dataset " + path, true);
  Hid space = own(H5Dget_space(dset.get()), "dataspace of " + path, true);
  info.shape = detail::spaceDims(space.get());
  Hid type = own(H5Dget_type(dset.get()), "datatype of " + path, true);
  if (H5Tget_class(type.get()) == H5T_STRING) {
    info.dtype = "string";
  } else {
    try {
      info.dtype = storageDtypeName(
          detail::datasetStorageDtype(dset.get(), path, state.attributeText(path, schema::kAttrLogicalDtype)));
    } catch (const InputError&) {
      info.dtype = "unsupported";
    }
  }
  info.chunks = detail::chunkDims(dset.get());
  info.compression = detail::filterDescription(dset.get());
  info.axes = state.attributeText(path, schema::kAttrAxes).value_or("");
  return info;
}

herr_t collectDataset(hid_t group, const char* name, const H5L_info_t* linfo, void* data) {
  if (linfo->type != H5L_TYPE_HARD) return 0;
  const hid_t obj = H5Oopen(group, name, H5P_DEFAULT);
  if (obj < 0) return 0;
  if (H5Iget_type(obj) == H5I_DATASET) static_cast<std::vector<std::string>*>(data)->push_back(std::string("/") + name);
  H5Oclose(obj);
  return 0;
}

std::vector<std::string> datasetPaths(hid_t file, const std::string& group) {
  std::vector<std::string> paths;
  if (!detail::linkExists(file, group)) return paths;
  Hid g = own(H5Gopen2(file, group.c_str(), H5P_DEFAULT), "open group " + group, true);
  H5Lvisit(g.get(), H5_INDEX_NAME, H5_ITER_INC, collectDataset, &paths);
  if (group != "/")
    for (auto& p : paths) p = group + p;
  std::sort(paths.begin(), paths.end());
  return paths;
}

/// Whether the dataset records a fill value of its own (what a masked tile reads as).
bool userFillValue(hid_t dcpl) {
  H5D_fill_value_t status{};
  return H5Pfill_value_defined(dcpl, &status) >= 0 && status == H5D_FILL_VALUE_USER_DEFINED;
}

// gzip's best ratio is ~1032:1, so a filtered (compressed) dataset can hold at most this many bytes per stored byte.
constexpr uint64_t kMaxFilterRatio = 1100;

/// No dimension of a real cache comes near this (2^40: a trillion tokens, layers, heads or features).
constexpr int64_t kMaxExtent = int64_t{1} << 40;

// Schema checks before a dataset's bytes are read (caller holds the lock): rank, element count without
// overflow, logical size against the bytes actually stored (a corrupt or hostile header can claim
// exabytes), the ranks the schema fixes (/tokens, /token_strings [batch, pos]; /logits [batch, pos,
// vocab]) and the axes attribute. InputError names the file, the dataset and the problem.
void validateDataset(hid_t dset, const std::string& abs, const std::vector<int64_t>& shape, uint64_t elementSize,
                     uint64_t fileBytes, const std::optional<std::string>& axes, const std::string& what) {
  uint64_t count = 1;
  for (const int64_t d : shape) {
    if (d < 0) throw InputError(fmt::format("{}: negative extent {} (corrupt file)", what, d));
    // Checked on its own: beside a zero extent a huge one holds no elements, so the size checks below pass,
    // yet a caller that sizes per-row containers would allocate it (fuzz finding: /token_strings [2^43, 0]).
    if (d > kMaxExtent)
      throw InputError(fmt::format("{}: extent {} in shape {} is beyond any real cache (corrupt file)", what, d,
                                   fmt::join(shape, "x")));
    const auto u = static_cast<uint64_t>(d);
    if (u != 0 && count > static_cast<uint64_t>(INT64_MAX) / elementSize / u)
      throw InputError(fmt::format("{}: shape {} overflows a 64-bit size (corrupt file)", what, fmt::join(shape, "x")));
    count *= u;
  }
  const uint64_t bytes = count * elementSize;
  if (bytes > 0) {
    const uint64_t stored = H5Dget_storage_size(dset);
    Hid dcpl = own(H5Dget_create_plist(dset), "creation properties of " + what, true);
    const bool filtered = H5Pget_nfilters(dcpl.get()) > 0;
    if (stored == 0)
      throw InputError(fmt::format("{}: shape {} but no data stored (never written or corrupt file)", what,
                                   fmt::join(shape, "x")));
    // The stored size is what the layout message claims (for contiguous data libhdf5 does not check it
    // against the file): a 16 KB file claiming 44 GB of logits would otherwise be allocated and read
    // (fuzz finding: RSS past 2 GiB).
    if (stored > fileBytes)
      throw InputError(fmt::format("{}: claims {} bytes stored but the file holds only {} (corrupt file)", what, stored,
                                   fileBytes));
    // Masked tiles (store/masked_tiles.hpp): an attention map whose tiles holding only the mask's value were
    // never written; they read as the recorded fill value.
    const bool maskedTiles = !filtered && maskedTileCandidate(abs, shape, detail::chunkDims(dset)) &&
                             userFillValue(dcpl.get());
    const uint64_t ratio = filtered ? kMaxFilterRatio : maskedTiles ? kMaxMaskedTileRatio : 1;
    if (bytes / ratio > stored)
      throw InputError(fmt::format("{}: shape {} needs {} bytes but only {} are stored{} (corrupt file)", what,
                                   fmt::join(shape, "x"), bytes, stored,
                                   filtered ? " compressed" : maskedTiles ? " in masked tiles" : ""));
  }
  auto needRank = [&](std::size_t rank, const char* dims) {
    if (shape.size() != rank)
      throw InputError(fmt::format("{}: has {} dims, the cache schema says {} {}", what, shape.size(), rank, dims));
  };
  if (abs == schema::kTokens || abs == schema::kTokenStrings) needRank(2, "[batch, pos]");
  if (abs == schema::kLogits) needRank(3, "[batch, pos, vocab]");
  if (axes && !axes->empty()) {
    const auto n = static_cast<std::size_t>(std::count(axes->begin(), axes->end(), ',')) + 1;
    if (n != shape.size())
      throw InputError(fmt::format("{}: axes attribute '{}' names {} dims but the data has {}", what, *axes, n, shape.size()));
  }
}

}  // namespace

CacheReader CacheReader::open(const std::filesystem::path& path) {
  const std::string name = path.string();
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) throw InputError(fmt::format("cache '{}': no such file", name));
  if (std::filesystem::is_directory(path, ec))
    throw InputError(fmt::format("cache '{}' is a folder: expected an .h5 file", name));
  if (hasSuffix(name, schema::kPartialSuffix))
    throw InputError(fmt::format("cache '{}' is unfinished (.partial): the run writing it was killed or cancelled "
                                 "before it completed; run it again",
                                 name));
  if (!std::filesystem::is_regular_file(path, ec))
    throw InputError(fmt::format("cache '{}' is not a regular file: expected an .h5 file", name));
  // libhdf5 1.10.8 crashes or loops on some corrupt files: read this one in a separate process first.
  isolation::Manifest manifest = isolation::checkCacheInChildProcess(path);
  auto state = std::make_shared<detail::ReaderState>();
  state->manifest = std::move(manifest);
  state->path = path;
  state->fileBytes = std::filesystem::file_size(path, ec);
  Hdf5Lock lock;
  const htri_t isHdf5 = H5Fis_hdf5(name.c_str());
  if (isHdf5 <= 0) {
    H5Eclear2(H5E_DEFAULT);
    throw InputError(fmt::format("cache '{}' is not an HDF5 file (no HDF5 signature): expected a mechscope .h5 cache",
                                 name));
  }
  const hid_t f = H5Fopen(name.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT);
  if (f < 0)
    throw InputError(fmt::format("cache '{}' cannot be opened: truncated or corrupt HDF5 file ({})", name,
                                 detail::errorStack()));
  state->file = Hid(f);
  const auto versionAttr = state->attribute("/", schema::kAttrSchemaVersion);
  const auto version = versionAttr ? versionAttr->integer : std::nullopt;
  if (!version)
    throw InputError(fmt::format("'{}' is an HDF5 file but not a mechscope cache: it has no integer '{}' attribute",
                                 name, schema::kAttrSchemaVersion));
  if (*version > schema::kSchemaVersion)
    throw InputError(fmt::format("cache '{}' has schema_version {}, newer than this mechscope reads (≤ {}): "
                                 "upgrade mechscope to read it",
                                 name, *version, schema::kSchemaVersion));
  if (*version < 1) throw InputError(fmt::format("cache '{}' has an invalid schema_version {}", name, *version));
  const auto complete = state->attribute("/", schema::kAttrComplete);
  if (!complete || complete->integer.value_or(0) != 1)
    throw InputError(fmt::format("cache '{}' is incomplete ({} is not 1): the run writing it did not finish", name,
                                 schema::kAttrComplete));
  state->schemaVersion = *version;
  return CacheReader(std::move(state));
}

const std::filesystem::path& CacheReader::path() const { return m_state->path; }

int64_t CacheReader::schemaVersion() const { return m_state->schemaVersion; }

std::map<std::string, std::string> CacheReader::attributes(const std::string& objPath) const {
  Hdf5Lock lock;
  const std::string abs = objPath.empty() ? "/" : (objPath[0] == '/' ? objPath : resolve(objPath));
  if (!detail::linkExists(m_state->file.get(), abs))
    throw InputError(fmt::format("cache '{}': no object '{}'", m_state->path.string(), abs));
  std::map<std::string, std::string> out;
  if (const auto it = m_state->manifest.attributes.find(abs); it != m_state->manifest.attributes.end())
    for (const auto& [key, value] : it->second) out[key] = value.text;
  return out;
}

Provenance CacheReader::provenance() const {
  const auto a = attributes("/");
  auto get = [&a](const char* k) {
    auto it = a.find(k);
    return it == a.end() ? std::string() : it->second;
  };
  Provenance p;
  p.modelFolder = get("model_folder");
  p.family = get("family");
  p.configJson = get("config_json");
  p.weightsHash = get("weights_hash");
  p.dtype = get("dtype");
  p.device = get("device");
  p.attentionPath = get("attention_path");
  p.bosHandling = get("bos_handling");
  p.padding = get("padding");
  p.commandLine = get("command_line");
  p.mechscopeVersion = get("mechscope_version");
  p.createdUtc = get("created_utc");
  return p;
}

std::vector<DatasetInfo> CacheReader::activations() const {
  Hdf5Lock lock;
  std::vector<DatasetInfo> out;
  for (const auto& p : datasetPaths(m_state->file.get(), schema::kActivationsGroup))
    out.push_back(describe(*m_state, p));
  return out;
}

std::vector<DatasetInfo> CacheReader::datasets() const {
  Hdf5Lock lock;
  std::vector<DatasetInfo> out;
  for (const auto& p : datasetPaths(m_state->file.get(), "/")) out.push_back(describe(*m_state, p));
  return out;
}

std::string CacheReader::resolve(const std::string& datasetPath) const {
  const hid_t f = m_state->file.get();
  if (datasetPath.empty()) throw InputError(fmt::format("cache '{}': empty dataset name", m_state->path.string()));
  if (datasetPath[0] == '/') return datasetPath;
  if (datasetPath.find('/') == std::string::npos) {
    const std::string act = std::string(schema::kActivationsGroup) + "/" + datasetPath;
    if (detail::linkExists(f, act)) return act;
  }
  return "/" + datasetPath;
}

bool CacheReader::has(const std::string& path) const {
  Hdf5Lock lock;
  const std::string abs = resolve(path);
  if (!detail::linkExists(m_state->file.get(), abs)) return false;
  Hid obj = Hid(H5Oopen(m_state->file.get(), abs.c_str(), H5P_DEFAULT));
  return obj.valid() && H5Iget_type(obj.get()) == H5I_DATASET;
}

DatasetInfo CacheReader::info(const std::string& path) const {
  Hdf5Lock lock;
  if (!has(path))
    throw InputError(fmt::format("cache '{}' has no dataset '{}' (mechscope-cli cache-info lists them)",
                                 m_state->path.string(), path));
  return describe(*m_state, resolve(path));
}

at::Tensor CacheReader::readSlice(const std::string& datasetPath, const std::vector<SliceRange>& ranges) const {
  Hdf5Lock lock;
  if (!has(datasetPath))
    throw InputError(fmt::format("cache '{}' has no dataset '{}' (mechscope-cli cache-info lists them)",
                                 m_state->path.string(), datasetPath));
  const std::string abs = resolve(datasetPath);
  const std::string what = fmt::format("cache '{}' dataset '{}'", m_state->path.string(), abs);
  Hid dset = own(H5Dopen2(m_state->file.get(), abs.c_str(), H5P_DEFAULT), "open " + what, true);
  {
    Hid type = own(H5Dget_type(dset.get()), "datatype of " + what, true);
    if (H5Tget_class(type.get()) == H5T_STRING)
      throw InputError(fmt::format("{} holds strings: use tokenStrings() or readText(), not a numeric read", what));
  }
  const StorageDtype dtype =
      detail::datasetStorageDtype(dset.get(), abs, m_state->attributeText(abs, schema::kAttrLogicalDtype));
  Hid fileSpace = own(H5Dget_space(dset.get()), "dataspace of " + what, true);
  const auto shape = detail::spaceDims(fileSpace.get());
  validateDataset(dset.get(), abs, shape, static_cast<uint64_t>(storageElementSize(dtype)), m_state->fileBytes,
                  m_state->attributeText(abs, schema::kAttrAxes), what);
  if (abs == schema::kTokens && dtype != StorageDtype::Int64 && dtype != StorageDtype::Int32)
    throw InputError(fmt::format("{}: token ids stored as {}, the cache schema says int64", what, storageDtypeName(dtype)));
  const auto opts = at::TensorOptions().dtype(storageScalarType(dtype));
  if (shape.empty()) {
    if (!ranges.empty()) throw InputError(fmt::format("{} is a scalar: it takes no slice", what));
    at::Tensor out = at::empty({}, opts);
    detail::check<InputError>(H5Dread(dset.get(), detail::memType(dtype), H5S_ALL, H5S_ALL, H5P_DEFAULT, out.data_ptr()),
                              "read " + what);
    return out;
  }
  const auto resolved = resolveSlice(ranges, shape, what);
  std::vector<int64_t> counts, kept;
  std::vector<hsize_t> start, stride, count;
  for (const auto& r : resolved) {
    counts.push_back(r.count);
    if (!r.dropped) kept.push_back(r.count);
    start.push_back(static_cast<hsize_t>(r.offset));
    stride.push_back(static_cast<hsize_t>(r.stride));
    count.push_back(static_cast<hsize_t>(r.count));
  }
  at::Tensor out = at::empty(counts, opts);  // [counts...]
  if (out.numel() > 0) {
    detail::check<InputError>(H5Sselect_hyperslab(fileSpace.get(), H5S_SELECT_SET, start.data(), stride.data(),
                                                  count.data(), nullptr),
                              "select in " + what);
    Hid memSpace = own(H5Screate_simple(static_cast<int>(count.size()), count.data(), nullptr), "memory space");
    detail::check<InputError>(
        H5Dread(dset.get(), detail::memType(dtype), memSpace.get(), fileSpace.get(), H5P_DEFAULT, out.data_ptr()),
        "read " + what);
  }
  return out.reshape(kept);
}

at::Tensor CacheReader::read(const std::string& datasetPath) const { return readSlice(datasetPath, {}); }

std::string CacheReader::readText(const std::string& datasetPath) const {
  Hdf5Lock lock;
  if (!has(datasetPath))
    throw InputError(fmt::format("cache '{}' has no dataset '{}'", m_state->path.string(), datasetPath));
  const std::string abs = resolve(datasetPath);
  const auto it = m_state->manifest.strings.find(abs);
  if (it == m_state->manifest.strings.end() || it->second.values.size() != 1)
    throw InputError(fmt::format("cache '{}' dataset '{}' is not a scalar string", m_state->path.string(), abs));
  return it->second.values.front();
}

at::Tensor CacheReader::tokens() const {
  if (!has(schema::kTokens)) return {};
  return read(schema::kTokens);
}

std::vector<std::vector<std::string>> CacheReader::tokenStrings() const {
  Hdf5Lock lock;
  std::vector<std::vector<std::string>> out;
  if (!has(schema::kTokenStrings)) return out;
  const std::string what = fmt::format("cache '{}' /token_strings", m_state->path.string());
  const auto it = m_state->manifest.strings.find(schema::kTokenStrings);
  if (it == m_state->manifest.strings.end())
    throw InputError(fmt::format("{}: expected variable-length strings [batch, pos] (at most {} of them)", what,
                                 isolation::WalkLimits{}.maxStrings));
  const auto& dims = it->second.shape;
  const auto& values = it->second.values;
  if (dims.size() != 2)
    throw InputError(fmt::format("{}: has {} dims, the cache schema says 2 [batch, pos]", what, dims.size()));
  // [2^43, 0] holds no strings yet would size 2^43 rows (fuzz finding): extents beyond any real cache are refused.
  for (const int64_t d : dims)
    if (d < 0 || d > kMaxExtent)
      throw InputError(fmt::format("{}: extent {} in shape {} is beyond any real cache (corrupt file)", what, d,
                                   fmt::join(dims, "x")));
  if (static_cast<uint64_t>(dims[0]) * static_cast<uint64_t>(dims[1]) != values.size())
    throw InputError(fmt::format("{}: shape {} but {} strings (corrupt file)", what, fmt::join(dims, "x"), values.size()));
  // Rows without positions hold nothing, yet would be allocated one by one (fuzz: [10^9, 0] took minutes).
  if (dims[1] == 0 && dims[0] > 0)
    throw InputError(fmt::format("{}: shape {} has rows but no positions (corrupt file)", what, fmt::join(dims, "x")));
  out.resize(static_cast<size_t>(dims[0]));
  for (int64_t b = 0; b < dims[0]; ++b)
    out[b].assign(values.begin() + b * dims[1], values.begin() + (b + 1) * dims[1]);
  return out;
}

ActivationCache CacheReader::toActivationCache(const std::vector<std::string>& globs) const {
  ActivationCache cache;
  for (const auto& info : activations()) {
    const bool match = std::any_of(globs.begin(), globs.end(), [&](const std::string& g) {
      return fnmatch(g.c_str(), info.name.c_str(), 0) == 0;
    });
    if (match) cache.tensors[info.name] = read(info.path);
  }
  cache.tokens = tokens();
  return cache;
}

}  // namespace mechscope::store
