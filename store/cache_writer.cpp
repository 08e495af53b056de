#include "store/cache_writer.hpp"

#include <ATen/ATen.h>

#include <fcntl.h>
#include <unistd.h>

#include <fmt/format.h>

#include <algorithm>
#include <cstdlib>
#include <ctime>
#include <optional>
#include <utility>

#include "core/common/build_info.hpp"
#include "core/common/errors.hpp"
#include "mechscope/version.hpp"
#include "store/background_writer.hpp"
#include "store/writeback.hpp"
#include "store/chunking.hpp"
#include "store/conversion_buffer.hpp"
#include "store/detail/direct_vfd.hpp"
#include "store/detail/writer_state.hpp"
#include "store/hdf5_lock.hpp"
#include "store/heap_policy.hpp"
#include "store/hdf5_version.hpp"
#include "store/hook_axes.hpp"
#include "store/masked_tiles.hpp"
#include "store/schema.hpp"

namespace mechscope::store {

using detail::Hid;
using detail::own;

namespace {

std::string utcNow() {
  const std::time_t now = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&now, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

std::string absolutePath(const std::string& path) {
  if (path.empty() || path == "/") return "/";
  return path[0] == '/' ? path : "/" + path;
}

void checkName(const std::string& name, const std::string& what) {
  if (name.empty()) throw InputError(fmt::format("{}: the name is empty", what));
  if (name == "." || name == ".." || name.find("//") != std::string::npos || name.back() == '/')
    throw InputError(fmt::format("{}: '{}' is not a valid HDF5 object name", what, name));
}

/// fsync a file or directory by path; errors are reported (a commit that cannot sync is not durable).
void fsyncPath(const std::filesystem::path& p, bool directory) {
  const int fd = ::open(p.c_str(), directory ? O_RDONLY | O_DIRECTORY : O_RDONLY);
  if (fd < 0) {
    if (directory) return;  // some filesystems refuse opening directories; the rename is still atomic
    throw Error(fmt::format("commit: cannot reopen '{}' to sync it", p.string()));
  }
  const int rc = ::fsync(fd);
  ::close(fd);
  if (rc != 0 && !directory) throw Error(fmt::format("commit: fsync of '{}' failed", p.string()));
}

std::shared_ptr<detail::WriterState> requireOpen(const std::shared_ptr<detail::WriterState>& state,
                                                 const std::string& what) {
  if (!state || !state->open)
    throw Error(fmt::format("{}: the cache writer is already committed or closed", what));
  return state;
}

/// The axes attribute of dataset `path` (takes Hdf5Lock).
void writeAxesIn(const std::shared_ptr<detail::WriterState>& s, const std::string& path, const std::string& axes) {
  Hdf5Lock lock;
  auto state = requireOpen(s, "dataset " + path);
  detail::writeStringAttr(state->file.get(), absolutePath(path), schema::kAttrAxes, axes);
}

/// The dataset path of hook `hookName` ("activations/<name>"); InputError for a bad name or one with '/'.
std::string activationPath(const std::string& hookName) {
  checkName(hookName, "activation");
  if (hookName.find('/') != std::string::npos)
    throw InputError(fmt::format("activation '{}': hook names must not contain '/'", hookName));
  return std::string(schema::kActivationsGroup) + "/" + hookName;
}

/// The storage dtype of an activation `t` under `options`: floats in the chosen dtype, integers in their own.
StorageDtype activationStorageDtype(const CacheOptions& options, const at::Tensor& t) {
  return t.is_floating_point() ? options.dtype : naturalStorageDtype(t.scalar_type());
}

/// The masked-tile layout of dataset `path` when tiles are `wanted` and the cache is uncompressed (tiles are written
/// whole with H5Dwrite_chunk, past any filter); std::nullopt otherwise or for a dataset that is not an attention map.
std::optional<MaskedTileLayout> wantedTileLayout(bool wanted, const CacheOptions& options, const std::string& path,
                                                 const std::vector<int64_t>& shape, StorageDtype dtype) {
  if (!wanted || options.gzipLevel != 0) return std::nullopt;
  return maskedTileLayout(path, shape, dtype, options.chunkBytes);
}

/// The hook whose tensor is the forward's logits.
constexpr const char* kLogitsHook = "unembed.hook_logits";

/// Whether `b` holds the values `a` held when its version counter read `aVersion`: the same memory, layout,
/// dtype and device, with no in-place write since (the caller holds `a`, so its memory was not reused).
bool sameValuesAs(const at::Tensor& a, int64_t aVersion, const at::Tensor& b) {
  return a.data_ptr() == b.data_ptr() && a.sizes() == b.sizes() && a.strides() == b.strides() &&
         a.scalar_type() == b.scalar_type() && a.device() == b.device() && static_cast<int64_t>(b._version()) == aVersion;
}

}  // namespace

int defaultDirectWriteThreads() {
  const char* v = std::getenv("MECHSCOPE_DIRECT_WRITERS");
  if (!v || !*v) return 4;
  return static_cast<int>(std::clamp<long>(std::strtol(v, nullptr, 10), 1, 16));
}

// ---- DatasetWriter -------------------------------------------------------------------------------

void DatasetWriter::write(const std::vector<int64_t>& offset, const at::Tensor& block) {
  if (!m_dataset) throw Error("DatasetWriter::write on a writer that was not created by beginDataset");
  if (!block.defined()) throw InputError(fmt::format("dataset '{}': the block tensor is undefined", m_path));
  const auto rank = static_cast<int64_t>(m_shape.size());
  if (block.dim() != rank || static_cast<int64_t>(offset.size()) != rank)
    throw InputError(fmt::format("dataset '{}' has rank {}: got a block of rank {} at an offset of {} entries", m_path,
                                 rank, block.dim(), offset.size()));
  for (int64_t d = 0; d < rank; ++d) {
    if (offset[d] < 0 || offset[d] + block.size(d) > m_shape[d])
      throw InputError(fmt::format("dataset '{}' of shape [{}]: block [{}] at offset [{}] does not fit (dim {})", m_path,
                                   fmt::join(m_shape, ", "), fmt::join(block.sizes(), ", "), fmt::join(offset, ", "),
                                   d));
  }
  const at::Tensor data = toStorage(block, m_dtype);  // conversion outside the lock
  if (data.numel() == 0) return;
  Hdf5Lock lock;
  requireOpen(m_state, "dataset " + m_path);
  const hid_t dset = m_dataset->get();
  const hid_t mtype = detail::memType(m_dtype);
  if (rank == 0) {
    detail::check<Error>(H5Dwrite(dset, mtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, data.data_ptr()), "write " + m_path);
    return;
  }
  std::vector<hsize_t> start(offset.begin(), offset.end());
  std::vector<hsize_t> count(block.sizes().begin(), block.sizes().end());
  Hid fileSpace = own(H5Dget_space(dset), "dataspace of " + m_path);
  detail::check<Error>(
      H5Sselect_hyperslab(fileSpace.get(), H5S_SELECT_SET, start.data(), nullptr, count.data(), nullptr),
      "select in " + m_path);
  Hid memSpace = own(H5Screate_simple(static_cast<int>(rank), count.data(), nullptr), "memory space");
  // The chunks libhdf5 writes straight from `data` go to the disk several at a time; `data` outlives the scope.
  detail::ParallelDirectWrites parallel(data.data_ptr(), static_cast<std::size_t>(data.numel() * data.element_size()),
                                        m_state->directWriteThreads);
  const herr_t written = H5Dwrite(dset, mtype, memSpace.get(), fileSpace.get(), H5P_DEFAULT, data.data_ptr());
  const bool queuedOk = parallel.finish();
  detail::check<Error>(written < 0 || !queuedOk ? -1 : 0, fmt::format("write {} into '{}'", m_path, m_state->partialName));
}

void DatasetWriter::writeTiles(const at::Tensor& data, const MaskedTileLayout& tiles) {
  const hid_t dset = m_dataset->get();
  const int64_t chunkBytes = tiles.chunk[1] * tiles.chunk[2] * tiles.chunk[3] * storageElementSize(m_dtype);
  forEachUnmaskedTile(data, tiles, [&](const std::vector<int64_t>& offset, const void* bytes) {
    const std::vector<hsize_t> at(offset.begin(), offset.end());
    Hdf5Lock lock;
    requireOpen(m_state, "dataset " + m_path);
    detail::check<Error>(H5Dwrite_chunk(dset, H5P_DEFAULT, 0, at.data(), static_cast<size_t>(chunkBytes), bytes),
                         fmt::format("write {} into '{}'", m_path, m_state->partialName));
  });
}

void DatasetWriter::writePackedTiles(const PackedTiles& packed) {
  const hid_t dset = m_dataset->get();
  const auto chunkBytes = static_cast<size_t>(packed.layout.chunkBytes());
  Hdf5Lock lock;
  requireOpen(m_state, "dataset " + m_path);
  // The chunks go to the disk several at a time straight from `packed`, which outlives the scope.
  detail::ParallelDirectWrites parallel(packed.memory.get(), packed.offsets.size() * packed.stride,
                                        m_state->directWriteThreads);
  herr_t written = 0;
  for (size_t i = 0; i < packed.offsets.size() && written >= 0; ++i) {
    const std::vector<hsize_t> at(packed.offsets[i].begin(), packed.offsets[i].end());
    written = H5Dwrite_chunk(dset, H5P_DEFAULT, 0, at.data(), chunkBytes, packed.chunk(i));
  }
  const bool queuedOk = parallel.finish();
  detail::check<Error>(written < 0 || !queuedOk ? -1 : 0, fmt::format("write {} into '{}'", m_path, m_state->partialName));
}

// ---- CacheWriter ---------------------------------------------------------------------------------

CacheWriter::CacheWriter(std::filesystem::path finalPath, const Provenance& provenance, const CacheOptions& options)
    : m_finalPath(std::move(finalPath)), m_options(options) {
  if (m_finalPath.empty()) throw InputError("cache writer: the output path is empty");
  if (m_options.gzipLevel < 0 || m_options.gzipLevel > 9)
    throw InputError(fmt::format("cache writer: gzip level must be 0..9, got {}", m_options.gzipLevel));
  if (m_options.chunkBytes < 1024)
    throw InputError(fmt::format("cache writer: chunk size must be ≥ 1024 bytes, got {}", m_options.chunkBytes));
  m_partialPath = m_finalPath;
  m_partialPath += schema::kPartialSuffix;
  const auto parent = m_finalPath.has_parent_path() ? m_finalPath.parent_path() : std::filesystem::path(".");
  std::error_code ec;
  if (!std::filesystem::is_directory(parent, ec))
    throw InputError(fmt::format("cache '{}': the folder '{}' does not exist", m_finalPath.string(), parent.string()));
  if (std::filesystem::is_directory(m_finalPath, ec))
    throw InputError(fmt::format("cache '{}' is a folder: expected a file name such as out.h5", m_finalPath.string()));

  boundHeapGrowthForStreaming();  // so a run's RSS stays at about one layer (see heap_policy.hpp)
  auto state = std::make_shared<detail::WriterState>();
  state->partialName = m_partialPath.string();
  {
    Hdf5Lock lock;
    if (m_options.gzipLevel > 0 && H5Zfilter_avail(H5Z_FILTER_DEFLATE) <= 0)
      throw UnsupportedError("cache writer: this libhdf5 has no gzip (deflate) filter");
    Hid fapl = own(H5Pcreate(H5P_FILE_ACCESS), "file access plist");
    // v1.8 object format: readable by every libhdf5 ≥ 1.8 and h5py; allows attributes > 64 KiB (config JSON).
    H5Pset_libver_bounds(fapl.get(), H5F_LIBVER_V18, H5F_LIBVER_V18);
    // Closing the file closes every object still open in it, so commit() cannot leave data unflushed.
    H5Pset_fclose_degree(fapl.get(), H5F_CLOSE_STRONG);
    if (m_options.directWrites && detail::useDirectWrites(fapl.get()))  // false: the default driver stays
      state->directWriteThreads = m_options.directWriteThreads;  // ParallelDirectWrites keeps it within 1..16
    state->file = own(H5Fcreate(m_partialPath.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, fapl.get()),
                      fmt::format("cannot create cache file '{}'", m_partialPath.string()), true);
    state->open = true;
    const hid_t f = state->file.get();
    detail::writeIntAttr(f, "/", schema::kAttrSchemaVersion, schema::kSchemaVersion);
    detail::writeIntAttr(f, "/", schema::kAttrComplete, 0);
    const std::pair<const char*, const std::string*> attrs[] = {
        {"model_folder", &provenance.modelFolder}, {"family", &provenance.family},
        {"config_json", &provenance.configJson},   {"weights_hash", &provenance.weightsHash},
        {"dtype", &provenance.dtype},              {"device", &provenance.device},
        {"attention_path", &provenance.attentionPath}, {"bos_handling", &provenance.bosHandling},
        {"padding", &provenance.padding},          {"command_line", &provenance.commandLine},
    };
    for (const auto& [key, value] : attrs) detail::writeStringAttr(f, "/", key, *value);
    detail::writeStringAttr(f, "/", "mechscope_version", kVersion);
    detail::writeStringAttr(f, "/", "created_utc", utcNow());
    detail::writeStringAttr(f, "/", "hdf5_version", hdf5Version());
    detail::writeStringAttr(f, "/", "torch_version", torchVersion());
    detail::writeStringAttr(f, "/", "storage_dtype", storageDtypeName(m_options.dtype));
    detail::writeIntAttr(f, "/", "gzip_level", m_options.gzipLevel);
    detail::writeIntAttr(f, "/", "shuffle", m_options.shuffle ? 1 : 0);
    detail::ensureGroups(f, schema::kActivationsGroup);
    detail::ensureGroups(f, schema::kAnalysesGroup);
  }
  m_state = std::move(state);
  if (m_options.earlyWriteback) m_writeback = std::make_shared<Writeback>(m_partialPath);
  if (m_options.backgroundBytes > 0) m_background = std::make_unique<BackgroundWriter>(m_options.backgroundBytes);
}

CacheWriter::CacheWriter(CacheWriter&& other) noexcept
    : m_state(std::move(other.m_state)),
      m_finalPath(std::move(other.m_finalPath)),
      m_partialPath(std::move(other.m_partialPath)),
      m_options(other.m_options),
      m_committed(other.m_committed),
      m_queued(std::move(other.m_queued)),
      m_background(std::move(other.m_background)),
      m_mapsWorker(std::move(other.m_mapsWorker)),
      m_writeback(std::move(other.m_writeback)),
      m_hookedLogits(std::move(other.m_hookedLogits)),
      m_hookedLogitsVersion(other.m_hookedLogitsVersion),
      m_logitStream(std::move(other.m_logitStream)) {}

CacheWriter::~CacheWriter() {
  m_mapsWorker.reset();  // drops the maps not yet formed, waits for the one in progress (it may queue to m_background)
  m_background.reset();  // drops queued tensors, waits for the write in progress
  if (!m_state || m_committed) return;
  try {
    {
      Hdf5Lock lock;
      if (m_state->open) {
        m_state->open = false;
        H5Fclose(m_state->file.get());  // strong close: every open dataset too
        // When that close failed (disk full: the final flush cannot write), the id still looks valid but
        // libhdf5's file object is half torn down; closing it again segfaults in H5F__close_cb. Forget it.
        m_state->file.release();
      }
    }
    std::error_code ec;
    std::filesystem::remove(m_partialPath, ec);  // only ever the .partial; NAME.h5 is never touched here
  } catch (...) {  // a destructor must not throw; at worst a stale .partial stays behind
  }
}

StorageDtype CacheWriter::activationDtype(const at::Tensor& t) const {
  if (!t.defined()) throw InputError("cache writer: undefined tensor");
  return activationStorageDtype(m_options, t);
}

DatasetWriter CacheWriter::createDatasetIn(const std::shared_ptr<detail::WriterState>& s, const CacheOptions& m_options,
                                           const std::filesystem::path& m_finalPath, const std::string& path,
                                           std::vector<int64_t> shape, StorageDtype dtype, int singletonDims,
                                           bool wholeWrite, const MaskedTileLayout* tiles) {
  const std::string abs = absolutePath(path);
  checkName(abs, "dataset");
  for (auto d : shape)
    if (d < 0) throw InputError(fmt::format("dataset '{}': negative dimension in shape [{}]", abs, fmt::join(shape, ", ")));
  const auto chunk =
      tiles ? tiles->chunk : chooseChunkShape(shape, storageElementSize(dtype), m_options.chunkBytes, singletonDims);

  DatasetWriter dw;
  Hdf5Lock lock;
  auto state = requireOpen(s, "dataset " + abs);
  const hid_t f = state->file.get();
  if (detail::linkExists(f, abs)) throw InputError(fmt::format("cache '{}': '{}' was already written", m_finalPath.string(), abs));
  const auto slash = abs.find_last_of('/');
  if (slash > 0) detail::ensureGroups(f, abs.substr(0, slash));

  std::vector<hsize_t> dims(shape.begin(), shape.end());
  Hid space = own(shape.empty() ? H5Screate(H5S_SCALAR)
                                : H5Screate_simple(static_cast<int>(dims.size()), dims.data(), nullptr),
                  "dataspace for " + abs);
  Hid dcpl = own(H5Pcreate(H5P_DATASET_CREATE), "dataset creation plist");
  Hid dapl = own(H5Pcreate(H5P_DATASET_ACCESS), "dataset access plist");
  if (!chunk.empty()) {
    std::vector<hsize_t> cdims(chunk.begin(), chunk.end());
    detail::check<Error>(H5Pset_chunk(dcpl.get(), static_cast<int>(cdims.size()), cdims.data()), "chunk " + abs);
    if (m_options.gzipLevel > 0) {
      if (m_options.shuffle) H5Pset_shuffle(dcpl.get());
      H5Pset_deflate(dcpl.get(), static_cast<unsigned>(m_options.gzipLevel));
    }
    if (tiles) {
      // Tiles are written whole with H5Dwrite_chunk (no cache, no conversion); the tiles never written read
      // as the fill value, so it must be recorded and returned (fill time "if set", libhdf5's default).
      H5Pset_chunk_cache(dapl.get(), 0, 0, 1.0);
      detail::check<Error>(H5Pset_fill_value(dcpl.get(), detail::fileType(dtype), tiles->fill.data()),
                           "fill value of " + abs);
    } else if (wholeWrite && m_options.gzipLevel == 0) {
      // Every chunk is written once, whole, from a C-contiguous tensor: no chunk cache, so libhdf5 writes
      // straight from the tensor's memory instead of copying each chunk into the cache first. That needs
      // the fill value never written too: otherwise libhdf5 1.10 takes every new chunk through a buffer
      // (filled, then copied into) whatever the cache size. Every element is written, so no reader sees
      // the difference; the fill value itself (0) stays recorded.
      H5Pset_chunk_cache(dapl.get(), 0, 0, 1.0);
      H5Pset_fill_time(dcpl.get(), H5D_FILL_TIME_NEVER);
    } else {
      // Room for a few chunks so block writes that straddle chunk edges do not read-modify-write.
      int64_t chunkBytes = storageElementSize(dtype);
      for (auto c : chunk) chunkBytes *= c;
      const auto cacheBytes = static_cast<size_t>(std::max<int64_t>(4 * chunkBytes, int64_t{1} << 20));
      H5Pset_chunk_cache(dapl.get(), 521, cacheBytes, 1.0);
    }
  }
  auto dset = std::make_shared<Hid>(own(H5Dcreate2(f, abs.c_str(), detail::fileType(dtype), space.get(), H5P_DEFAULT,
                                                   dcpl.get(), dapl.get()),
                                        fmt::format("create dataset '{}' in '{}'", abs, state->partialName)));
  if (dtype == StorageDtype::BFloat16)
    detail::writeStringAttr(f, abs, schema::kAttrLogicalDtype, storageDtypeName(StorageDtype::BFloat16));
  dw.m_state = state;
  dw.m_dataset = std::move(dset);
  dw.m_path = abs;
  dw.m_shape = std::move(shape);
  dw.m_dtype = dtype;
  return dw;
}

void CacheWriter::writeWholeIn(const std::shared_ptr<detail::WriterState>& s, const CacheOptions& options,
                               const std::filesystem::path& finalPath, const std::string& path, const at::Tensor& t,
                               StorageDtype dtype, int singletonDims, const std::string& axes,
                               const std::shared_ptr<Writeback>& writeback) {
  if (!t.defined()) throw InputError(fmt::format("dataset '{}': the tensor is undefined", path));
  {
    // Converted into the process's reused buffer (held until written), or toStorage when no conversion.
    const ConversionBuffer::Converted converted = sharedConversionBuffer().convert(t, dtype);
    const at::Tensor& data = converted.tensor;
    const auto tiles = wantedTileLayout(options.skipMaskedTiles, options, path, data.sizes().vec(), dtype);
    auto dw = createDatasetIn(s, options, finalPath, path, data.sizes().vec(), dtype, singletonDims, true,
                              tiles ? &*tiles : nullptr);
    if (tiles) dw.writeTiles(data, *tiles);
    else dw.write(std::vector<int64_t>(static_cast<size_t>(data.dim()), 0), data);
  }
  if (!axes.empty()) writeAxesIn(s, path, axes);
  if (writeback && t.numel() * storageElementSize(dtype) >= (int64_t{8} << 20)) writeback->advance();
}

void CacheWriter::writePackedIn(const std::shared_ptr<detail::WriterState>& s, const CacheOptions& options,
                                const std::filesystem::path& finalPath, const std::string& abs, const PackedTiles& packed,
                                StorageDtype dtype, const std::string& axes, const std::shared_ptr<Writeback>& writeback) {
  auto dw = createDatasetIn(s, options, finalPath, abs, packed.shape, dtype, -1, true, &packed.layout);
  dw.writePackedTiles(packed);
  if (!axes.empty()) writeAxesIn(s, abs, axes);
  if (writeback && packed.bytes() >= (int64_t{8} << 20)) writeback->advance();
}

void CacheWriter::submitMapTo(BackgroundWriter& writer, const std::shared_ptr<detail::WriterState>& s,
                              const CacheOptions& options, const std::filesystem::path& finalPath, const std::string& abs,
                              const std::string& hook, const at::Tensor& t, const std::shared_ptr<Writeback>& writeback) {
  const std::string axes = hookAxes(hook, t.dim());
  const StorageDtype dtype = activationStorageDtype(options, t);
  const auto tiles = wantedTileLayout(options.maskedTilesBesideForward, options, abs, t.sizes().vec(), dtype);
  if (!tiles) {
    submitWholeTo(writer, s, options, finalPath, abs, t, dtype, chunkSingletonDims(axes), axes, writeback);
    return;
  }
  // Converted and cut into tiles here, so the writer's thread only hands the kept chunks to the disk.
  auto packed = std::make_shared<const PackedTiles>(packUnmaskedTiles(toStorage(t, dtype).contiguous(), *tiles));
  writer.submit(packed->bytes(), [state = s, options, finalPath, abs, packed, dtype, axes, writeback] {
    writePackedIn(state, options, finalPath, abs, *packed, dtype, axes, writeback);
  });
}

DatasetWriter CacheWriter::beginDataset(const std::string& path, std::vector<int64_t> shape, StorageDtype dtype) {
  drain();
  return createDatasetIn(m_state, m_options, m_finalPath, path, std::move(shape), dtype, -1, false);
}

void CacheWriter::writeWhole(const std::string& path, const at::Tensor& t, StorageDtype dtype, int singletonDims) {
  drain();
  writeWholeIn(m_state, m_options, m_finalPath, path, t, dtype, singletonDims, "", nullptr);
}

void CacheWriter::drain() {
  if (m_mapsWorker) m_mapsWorker->drain();  // first: its jobs queue writes to m_background
  if (m_background) m_background->drain();
}

int64_t CacheWriter::peakQueuedBytes() const { return m_background ? m_background->peakPendingBytes() : 0; }

std::pair<double, double> CacheWriter::backgroundSeconds() const {
  if (!m_background) return {0.0, 0.0};
  return {m_background->submitWaitSeconds(), m_background->busySeconds()};
}

void CacheWriter::claimQueuedPath(const std::string& abs) {
  if (std::find(m_queued.begin(), m_queued.end(), abs) != m_queued.end())
    throw InputError(fmt::format("cache '{}': '{}' was already written", m_finalPath.string(), abs));
  m_queued.push_back(abs);
}

void CacheWriter::writeWholeMaybeAsync(const std::string& path, const at::Tensor& t, StorageDtype dtype,
                                       int singletonDims, const std::string& axes) {
  if (!m_background) {
    writeWholeIn(m_state, m_options, m_finalPath, path, t, dtype, singletonDims, axes, m_writeback);
    return;
  }
  const std::string abs = absolutePath(path);
  requireOpen(m_state, "dataset " + abs);  // without Hdf5Lock: not waiting for the lock the worker may hold
  claimQueuedPath(abs);
  submitWholeTo(*m_background, m_state, m_options, m_finalPath, abs, t, dtype, singletonDims, axes, m_writeback);
}

void CacheWriter::submitWholeTo(BackgroundWriter& writer, const std::shared_ptr<detail::WriterState>& s,
                                const CacheOptions& options, const std::filesystem::path& finalPath, const std::string& abs,
                                const at::Tensor& t, StorageDtype dtype, int singletonDims, const std::string& axes,
                                const std::shared_ptr<Writeback>& writeback) {
  // The tensor is shared, not copied: its storage stays alive until the job has written it.
  writer.submit(static_cast<int64_t>(t.nbytes()), [state = s, options, finalPath, abs, held = t.detach(), dtype, singletonDims,
                                                   axes, writeback] {
    writeWholeIn(state, options, finalPath, abs, held, dtype, singletonDims, axes, writeback);
  });
}

void CacheWriter::writeTokens(const at::Tensor& tokens, const std::vector<std::vector<std::string>>& tokenStrings) {
  if (!tokens.defined() || tokens.dim() != 2)
    throw InputError(fmt::format("tokens: expected an int64 tensor [batch, pos], got {}",
                                 tokens.defined() ? fmt::format("rank {}", tokens.dim()) : std::string("undefined")));
  if (tokens.is_floating_point() || tokens.is_complex())
    throw InputError(fmt::format("tokens: expected integer token ids, got {}", std::string(c10::toString(tokens.scalar_type()))));
  const int64_t batch = tokens.size(0), pos = tokens.size(1);
  if (!tokenStrings.empty()) {
    if (static_cast<int64_t>(tokenStrings.size()) != batch)
      throw InputError(fmt::format("token strings: expected {} rows (batch), got {}", batch, tokenStrings.size()));
    for (size_t b = 0; b < tokenStrings.size(); ++b)
      if (static_cast<int64_t>(tokenStrings[b].size()) != pos)
        throw InputError(fmt::format("token strings: row {} has {} strings, tokens have {} positions", b,
                                     tokenStrings[b].size(), pos));
  }
  writeWhole(schema::kTokens, tokens, StorageDtype::Int64);
  if (tokenStrings.empty()) return;
  std::vector<const char*> ptrs;
  ptrs.reserve(static_cast<size_t>(batch * pos));
  for (const auto& row : tokenStrings)
    for (const auto& s : row) ptrs.push_back(s.c_str());
  Hdf5Lock lock;
  auto state = requireOpen(m_state, "token strings");
  const hid_t f = state->file.get();
  const hsize_t dims[2] = {static_cast<hsize_t>(batch), static_cast<hsize_t>(pos)};
  Hid space = own(H5Screate_simple(2, dims, nullptr), "token strings space");
  Hid type = detail::vlenStringType();
  Hid dset = own(H5Dcreate2(f, schema::kTokenStrings, type.get(), space.get(), H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT),
                 "create /token_strings");
  if (!ptrs.empty())
    detail::check<Error>(H5Dwrite(dset.get(), type.get(), H5S_ALL, H5S_ALL, H5P_DEFAULT, ptrs.data()),
                         "write /token_strings");
}

void CacheWriter::writeLogits(const at::Tensor& logits) {
  if (!logits.defined() || logits.dim() != 3)
    throw InputError(fmt::format("logits: expected [batch, pos, vocab], got {}",
                                 logits.defined() ? fmt::format("rank {}", logits.dim()) : std::string("undefined")));
  const at::Tensor hooked = std::exchange(m_hookedLogits, at::Tensor());
  if (hooked.defined() && sameValuesAs(hooked, m_hookedLogitsVersion, logits)) {
    // The forward hands back the tensor its last hook saw: one copy of the bytes, two names.
    const std::string target = std::string(schema::kActivationsGroup) + "/" + kLogitsHook;
    const std::string link = absolutePath(schema::kLogits);
    if (!m_background) return linkIn(m_state, m_finalPath, link, target);
    claimQueuedPath(link);
    m_background->submit(0, [state = m_state, finalPath = m_finalPath, link, target] { linkIn(state, finalPath, link, target); });
    return;
  }
  writeWholeMaybeAsync(schema::kLogits, logits, activationDtype(logits), -1, "");
}

void CacheWriter::linkIn(const std::shared_ptr<detail::WriterState>& s, const std::filesystem::path& finalPath,
                         const std::string& linkPath, const std::string& target) {
  Hdf5Lock lock;
  auto state = requireOpen(s, "link " + linkPath);
  const hid_t f = state->file.get();
  if (detail::linkExists(f, linkPath))
    throw InputError(fmt::format("cache '{}': '{}' was already written", finalPath.string(), linkPath));
  detail::check<Error>(H5Lcreate_hard(f, target.c_str(), f, linkPath.c_str(), H5P_DEFAULT, H5P_DEFAULT),
                       fmt::format("link '{}' to '{}' in '{}'", linkPath, target, state->partialName));
}

void CacheWriter::runOrSubmit(int64_t bytes, std::function<void()> job) {
  if (m_background) m_background->submit(bytes, std::move(job));
  else job();
}

void CacheWriter::writeLogitRows(const at::Tensor& logits, int64_t posBegin, int64_t posEnd) {
  if (!logits.defined() || logits.dim() != 3)
    throw InputError(fmt::format("logit rows: expected the logits [batch, pos, vocab], got {}",
                                 logits.defined() ? fmt::format("rank {}", logits.dim()) : std::string("undefined")));
  const int64_t P = logits.size(1);
  if (posBegin == 0 && !m_logitStream) {
    const std::string abs = std::string(schema::kActivationsGroup) + "/" + kLogitsHook;
    requireOpen(m_state, "dataset " + abs);  // without Hdf5Lock, as writeWholeMaybeAsync
    if (m_background) claimQueuedPath(abs);
    auto stream = std::make_unique<LogitStream>();
    stream->tensor = logits;
    stream->dataset = std::make_shared<DatasetWriter>();
    const StorageDtype dtype = activationDtype(logits);
    const std::string axes = hookAxes(kLogitsHook, 3);
    const int singletonDims = chunkSingletonDims(axes);
    const auto chunk = chooseChunkShape(logits.sizes().vec(), storageElementSize(dtype), m_options.chunkBytes, singletonDims);
    stream->chunkRows = chunk.size() == 3 ? chunk[1] : P;
    // Created as a whole write (no chunk cache, fill never written): every chunk is written once, whole.
    runOrSubmit(0, [state = m_state, options = m_options, finalPath = m_finalPath, abs, shape = logits.sizes().vec(),
                    dtype, singletonDims, axes, holder = stream->dataset] {
      *holder = createDatasetIn(state, options, finalPath, abs, shape, dtype, singletonDims, options.gzipLevel == 0);
      writeAxesIn(state, abs, axes);
    });
    m_logitStream = std::move(stream);
  }
  if (!m_logitStream) throw InputError(fmt::format("logit rows: the first call must start at position 0, not {}", posBegin));
  LogitStream& s = *m_logitStream;
  if (logits.data_ptr() != s.tensor.data_ptr() || logits.sizes() != s.tensor.sizes())
    throw InputError("logit rows: another logits tensor before unembed.hook_logits was written");
  if (posBegin != s.received || posEnd <= posBegin || posEnd > P)
    throw InputError(fmt::format("logit rows: positions [{}, {}) do not follow the {} of {} received", posBegin, posEnd,
                                 s.received, P));
  s.received = posEnd;
  s.version = logits.is_inference() ? -1 : static_cast<int64_t>(logits._version());
  const int64_t upTo = posEnd == P ? P : posEnd / s.chunkRows * s.chunkRows;
  if (upTo <= s.written) return;
  const at::Tensor rows = logits.detach().narrow(1, s.written, upTo - s.written);  // [batch, rows, vocab], a view
  const int64_t first = s.written;
  s.written = upTo;
  runOrSubmit(static_cast<int64_t>(rows.nbytes()), [holder = s.dataset, rows, first, writeback = m_writeback] {
    holder->write({0, first, 0}, rows);
    if (writeback && rows.nbytes() >= (std::size_t{8} << 20)) writeback->advance();
  });
}

void CacheWriter::finishLogitStream(const at::Tensor& t) {
  const std::unique_ptr<LogitStream> s = std::move(m_logitStream);
  const bool unchanged = s->received == s->tensor.size(1) && s->version >= 0 && !t.is_inference() &&
                         sameValuesAs(s->tensor, s->version, t);
  if (!unchanged) {
    if (t.sizes() != s->tensor.sizes())
      throw InputError(fmt::format("activation '{}': shape [{}] after logits of shape [{}] were streamed", kLogitsHook,
                                   fmt::join(t.sizes(), ", "), fmt::join(s->tensor.sizes(), ", ")));
    runOrSubmit(static_cast<int64_t>(t.nbytes()), [holder = s->dataset, held = t.detach()] {
      holder->write({0, 0, 0}, held);
    });
  }
}

void CacheWriter::writeActivation(const std::string& hookName, const at::Tensor& t) {
  const std::string path = activationPath(hookName);
  if (!t.defined()) throw InputError(fmt::format("activation '{}': the tensor is undefined", hookName));
  const std::string axes = hookAxes(hookName, t.dim());
  if (hookName == kLogitsHook && m_logitStream) finishLogitStream(t);
  else writeWholeMaybeAsync(path, t, activationDtype(t), chunkSingletonDims(axes), axes);
  // writeLogits of the same tensor links to it instead of writing it again. Inference tensors keep no version
  // counter, so an in-place write could not be told apart: they are written twice.
  if (hookName == kLogitsHook && !t.is_inference()) {
    m_hookedLogits = t;
    m_hookedLogitsVersion = static_cast<int64_t>(t._version());
  }
}

void CacheWriter::writeDeferredMaps(const std::string& scoresHook, const std::string& patternHook,
                                    std::function<std::pair<at::Tensor, at::Tensor>()> formMaps, int64_t bytes) {
  const std::string hooks[] = {scoresHook, patternHook};  // "" where not written
  std::string paths[2];                                      // their datasets; a bad name fails here, on this thread
  for (int i = 0; i < 2; ++i)
    if (!hooks[i].empty()) paths[i] = absolutePath(activationPath(hooks[i]));
  if (!m_background || bytes > m_options.backgroundBytes) {
    // No queue, or maps larger than it (long inputs): formed now, so that no more than one layer's maps are alive
    // at once, as when the forward forms them.
    const auto [scores, pattern] = formMaps();
    if (!scoresHook.empty()) writeActivation(scoresHook, scores);
    if (!patternHook.empty()) writeActivation(patternHook, pattern);
    return;
  }
  for (const std::string& abs : paths) {
    if (abs.empty()) continue;
    requireOpen(m_state, "dataset " + abs);
    claimQueuedPath(abs);
  }
  if (!m_mapsWorker) m_mapsWorker = std::make_unique<BackgroundWriter>(m_options.backgroundBytes);
  // The job holds what a write needs, not `this`: the writer's queue (owned by m_background, which outlives this
  // worker), its file state and options.
  m_mapsWorker->submit(bytes, [form = std::move(formMaps), scoresHook, patternHook, scoresPath = paths[0], patternPath = paths[1],
                               writer = m_background.get(), state = m_state, options = m_options, finalPath = m_finalPath,
                               writeback = m_writeback] {
    const auto [scores, pattern] = form();
    if (!scoresPath.empty()) submitMapTo(*writer, state, options, finalPath, scoresPath, scoresHook, scores, writeback);
    if (!patternPath.empty()) submitMapTo(*writer, state, options, finalPath, patternPath, patternHook, pattern, writeback);
  });
}

void CacheWriter::writeAnalysisArray(const std::string& analysis, const std::string& name, const at::Tensor& t) {
  checkName(analysis, "analysis");
  checkName(name, "analysis " + analysis);
  if (!t.defined()) throw InputError(fmt::format("analysis '{}' array '{}': the tensor is undefined", analysis, name));
  writeWhole(std::string(schema::kAnalysesGroup) + "/" + analysis + "/" + name, t, naturalStorageDtype(t.scalar_type()));
}

void CacheWriter::writeAnalysisJson(const std::string& analysis, const std::string& name, const std::string& json) {
  checkName(analysis, "analysis");
  checkName(name, "analysis " + analysis);
  const std::string abs = std::string(schema::kAnalysesGroup) + "/" + analysis + "/" + name;
  drain();
  Hdf5Lock lock;
  auto state = requireOpen(m_state, "analysis " + abs);
  const hid_t f = state->file.get();
  if (detail::linkExists(f, abs)) throw InputError(fmt::format("cache '{}': '{}' was already written", m_finalPath.string(), abs));
  detail::ensureGroups(f, abs.substr(0, abs.find_last_of('/')));
  Hid space = own(H5Screate(H5S_SCALAR), "scalar space");
  Hid type = detail::vlenStringType();
  Hid dset = own(H5Dcreate2(f, abs.c_str(), type.get(), space.get(), H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT),
                 "create " + abs);
  const char* ptr = json.c_str();
  detail::check<Error>(H5Dwrite(dset.get(), type.get(), H5S_ALL, H5S_ALL, H5P_DEFAULT, &ptr), "write " + abs);
  dset.reset();
  detail::writeStringAttr(f, abs, "content_type", "application/json");
}

namespace {
template <class F>
void withObject(const std::shared_ptr<detail::WriterState>& s, const std::string& path, const std::string& key, F&& f) {
  const std::string abs = absolutePath(path);
  if (key.empty()) throw InputError(fmt::format("attribute on '{}': the key is empty", abs));
  Hdf5Lock lock;
  auto state = requireOpen(s, "attribute " + key);
  if (!detail::linkExists(state->file.get(), abs)) detail::ensureGroups(state->file.get(), abs);
  f(state->file.get(), abs);
}
}  // namespace

void CacheWriter::setAttribute(const std::string& path, const std::string& key, const std::string& value) {
  drain();
  withObject(m_state, path, key, [&](hid_t f, const std::string& abs) { detail::writeStringAttr(f, abs, key, value); });
}

void CacheWriter::setAttribute(const std::string& path, const std::string& key, const char* value) {
  setAttribute(path, key, std::string(value ? value : ""));
}

void CacheWriter::setAttribute(const std::string& path, const std::string& key, int64_t value) {
  drain();
  withObject(m_state, path, key, [&](hid_t f, const std::string& abs) { detail::writeIntAttr(f, abs, key, value); });
}

void CacheWriter::setAttribute(const std::string& path, const std::string& key, double value) {
  drain();
  withObject(m_state, path, key, [&](hid_t f, const std::string& abs) { detail::writeDoubleAttr(f, abs, key, value); });
}

void CacheWriter::commit() {
  m_hookedLogits = at::Tensor();
  if (m_logitStream && m_logitStream->received < m_logitStream->tensor.size(1))
    throw InputError(fmt::format("commit '{}': the logits were streamed up to position {} of {}", m_finalPath.string(),
                                 m_logitStream->received, m_logitStream->tensor.size(1)));
  m_logitStream.reset();
  drain();  // the background thread's first error, if any, surfaces here unchanged
  m_mapsWorker.reset();
  m_background.reset();
  {
    Hdf5Lock lock;
    auto state = requireOpen(m_state, fmt::format("commit '{}'", m_finalPath.string()));
    const hid_t f = state->file.get();
    detail::writeIntAttr(f, "/", schema::kAttrComplete, 1);
    detail::check<Error>(H5Fflush(f, H5F_SCOPE_GLOBAL), "flush " + state->partialName);
    state->open = false;
    const herr_t closed = H5Fclose(f);
    state->file.release();  // closed, or half-closed after a failure: never close it again (see ~CacheWriter)
    detail::check<Error>(closed, "close " + state->partialName);
  }
  fsyncPath(m_partialPath, false);
  std::error_code ec;
  std::filesystem::rename(m_partialPath, m_finalPath, ec);  // atomic: an older NAME.h5 stays until this instant
  if (ec)
    throw InputError(fmt::format("commit: cannot rename '{}' to '{}': {}", m_partialPath.string(), m_finalPath.string(),
                                 ec.message()));
  fsyncPath(m_finalPath.has_parent_path() ? m_finalPath.parent_path() : std::filesystem::path("."), true);
  m_committed = true;
}

}  // namespace mechscope::store
