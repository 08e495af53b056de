#pragma once
// CacheWriter: streams activations into NAME.h5.partial and renames it to NAME.h5 on commit(), so a
// killed or cancelled run never leaves a file that looks complete and never clobbers an older NAME.h5.
// Schema: docs/hdf5-schema.md. Thread-safe (every libhdf5 call goes through Hdf5Lock).
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "core/common/tensor.hpp"
#include "store/provenance.hpp"
#include "store/storage_dtype.hpp"

namespace mechscope::store {

class BackgroundWriter;
class Writeback;
struct MaskedTileLayout;
struct PackedTiles;

namespace detail {
struct WriterState;
class Hid;
}  // namespace detail

/// The default of CacheOptions::directWriteThreads: MECHSCOPE_DIRECT_WRITERS when set (clamped to 1..16), else 4.
int defaultDirectWriteThreads();

/// How activations and logits are stored.
struct CacheOptions {
  StorageDtype dtype = StorageDtype::Float32;  ///< Float32 or Float16 (BFloat16: raw bits as uint16)
  int gzipLevel = 0;                           ///< 0 = no compression (default: gzip costs ~30× write speed)
  bool shuffle = false;                        ///< byte shuffle before gzip (only with gzipLevel > 0)
  int64_t chunkBytes = int64_t{1} << 20;       ///< chunk size target (see chunking.hpp)
  /// > 0: writeActivation/writeLogits hand the tensor (no copy) to one background thread that converts and
  /// writes it while the caller goes on, keeping at most this many bytes of tensors queued; every other call
  /// waits for the queue first. The caller must not modify a handed-over tensor in place afterwards (the
  /// forward pass never does). 0: write on the caller's thread.
  int64_t backgroundBytes = 0;
  /// After each whole dataset of ≥ 8 MiB (activations, logits): send the new bytes of the .partial to the
  /// disk now and drop the bytes sent before from the page cache (store/writeback.hpp), so a large cache
  /// recycles its pages and commit()'s fsync has little left to wait for.
  bool earlyWriteback = true;
  /// Write the large raw data (chunks ≥ 64 KiB) with O_DIRECT, around the page cache, through mechscope's
  /// libhdf5 file driver (store/detail/direct_vfd.hpp); false: libhdf5's default driver (buffered writes).
  /// Either way the file is plain HDF5; filesystems without O_DIRECT get buffered writes.
  bool directWrites = true;
  /// With directWrites: how many threads write a dataset's chunks to the disk at once (1..16). One thread
  /// waits for each write in turn, while most disks (NVMe, cloud volumes) serve several requests at a time:
  /// on the 2-core VM of docs/benchmarks.md `dd` wrote 1.37 GB/s as one stream and 1.91 GB/s as four.
  /// 1: one write at a time, as before. MECHSCOPE_DIRECT_WRITERS, when set, replaces the default.
  int directWriteThreads = defaultDirectWriteThreads();
  /// Attention patterns and scores of whole-tensor writes (uncompressed) are stored in square tiles, and the
  /// tiles that hold only the mask's value (0 / −∞) are not written: readers get them from the dataset's fill
  /// value (store/masked_tiles.hpp). Off by default: the files are smaller (≈ 40 % of a pattern at 2K tokens),
  /// but copying the kept tiles costs the writer CPU, which on a 2-core machine slows an every-hook cache
  /// (docs/benchmarks.md). false: every element is written, in the usual row-band chunks.
  bool skipMaskedTiles = false;
  /// Attention maps formed beside the forward (CacheWriter::writeDeferredMaps on its own thread) are stored in masked
  /// tiles too, cut and packed on that thread: they then cost neither the forward nor the writer's thread any CPU,
  /// and the writer has fewer bytes to send to the disk (a causal map keeps 10 of 16 tiles per head at 1,024 tokens,
  /// about half at long inputs). Readers see the same tensors either way. false: those maps in row bands, as others.
  bool maskedTilesBesideForward = true;
};

/// Writes one pre-created dataset block by block (e.g. one layer of a stacked [layer, ...] array).
class DatasetWriter {
 public:
  DatasetWriter() = default;
  /// Writes `block` at `offset` (one entry per dim); InputError if it does not fit the dataset's shape.
  /// The block is converted to the dataset's storage dtype on the CPU first.
  void write(const std::vector<int64_t>& offset, const at::Tensor& block);
  /// The dataset path, e.g. "/analyses/sinks/scores".
  [[nodiscard]] const std::string& path() const { return m_path; }
  /// The dataset's shape.
  [[nodiscard]] const std::vector<int64_t>& shape() const { return m_shape; }
  /// The storage dtype.
  [[nodiscard]] StorageDtype dtype() const { return m_dtype; }

 private:
  friend class CacheWriter;
  /// Writes the whole dataset `data` (storage dtype, contiguous) tile by tile, skipping the masked tiles.
  void writeTiles(const at::Tensor& data, const MaskedTileLayout& tiles);
  /// Writes the packed chunks of a masked-tile dataset straight from their memory (several at a time with
  /// direct writes); the tiles not among them read as the fill value.
  void writePackedTiles(const PackedTiles& packed);
  std::shared_ptr<detail::WriterState> m_state;
  std::shared_ptr<detail::Hid> m_dataset;
  std::string m_path;
  std::vector<int64_t> m_shape;
  StorageDtype m_dtype = StorageDtype::Float32;
};

/// Writer of one cache file. Typical use: construct, writeTokens, writeActivation per hook as the forward
/// pass produces it, commit(). Without commit() the destructor deletes NAME.h5.partial.
class CacheWriter {
 public:
  /// Creates `finalPath` + ".partial" (truncating a stale one) with the provenance as root attributes.
  /// InputError when the folder does not exist or the file cannot be created.
  CacheWriter(std::filesystem::path finalPath, const Provenance& provenance, const CacheOptions& options = {});
  CacheWriter(const CacheWriter&) = delete;
  CacheWriter& operator=(const CacheWriter&) = delete;
  /// Moves the open file (and its background thread) to a new writer.
  CacheWriter(CacheWriter&& other) noexcept;
  CacheWriter& operator=(CacheWriter&&) noexcept = delete;
  /// Not committed: closes and deletes the .partial; never touches an existing NAME.h5.
  ~CacheWriter();

  /// /tokens int64 [batch, pos] and, when `tokenStrings` is not empty, /token_strings (UTF-8) [batch, pos].
  void writeTokens(const at::Tensor& tokens, const std::vector<std::vector<std::string>>& tokenStrings = {});
  /// /logits [batch, pos, vocab] in the storage dtype. When `logits` is the very tensor written as
  /// /activations/unembed.hook_logits (same memory and layout, not written to since), /logits becomes a hard
  /// link to that dataset: readers (h5py too) see two names for one copy of the bytes.
  void writeLogits(const at::Tensor& logits);
  /// /activations/<hookName>, the whole tensor at once in the storage dtype (any dtype/device in).
  /// `hookName` is the TransformerLens name verbatim (dots allowed, no '/'); InputError if written twice.
  void writeActivation(const std::string& hookName, const at::Tensor& t);
  /// Streams /activations/unembed.hook_logits while the forward computes it (ForwardOptions::onLogitRows):
  /// `logits` is the whole tensor [batch, pos, vocab], final at positions [posBegin, posEnd), the calls in
  /// order from position 0. Final rows are written in whole chunks (on the background thread when there is
  /// one) while the forward computes the next; the last call writes the rest. When writeActivation of
  /// unembed.hook_logits then gets that very tensor, unchanged since the last call, nothing is written again;
  /// any other tensor (a hook replaced the logits) is written over the streamed rows. InputError for calls out
  /// of order or for another tensor mid-stream; commit() refuses a stream that did not reach the last position.
  void writeLogitRows(const at::Tensor& logits, int64_t posBegin, int64_t posEnd);
  /// /activations/<scoresHook> and /activations/<patternHook> (an empty name: not written) from `formMaps`, which
  /// returns one layer's (scores, pattern) [batch, head, query, key] fp32 (ForwardOptions::onDeferredMaps). With a
  /// background queue (backgroundBytes > 0) the maps are formed on a second background thread while the writer's
  /// thread writes and the forward goes on; `bytes` (what the two maps take) is accounted to that thread's queue,
  /// bounded by backgroundBytes as the writer's. Without one, or when `bytes` exceed that bound (long inputs), they
  /// are formed and written now, so that no more than one layer's maps are alive at once. InputError for a bad
  /// name or one already written.
  void writeDeferredMaps(const std::string& scoresHook, const std::string& patternHook,
                         std::function<std::pair<at::Tensor, at::Tensor>()> formMaps, int64_t bytes);
  /// Creates a chunked dataset at `path` (relative paths are under the root; parents are created) to be
  /// filled with DatasetWriter::write. Unwritten elements read as 0.
  DatasetWriter beginDataset(const std::string& path, std::vector<int64_t> shape, StorageDtype dtype);
  /// /analyses/<analysis>/<name> as the tensor's natural dtype (floats fp32, double fp64, ints int64/int32).
  void writeAnalysisArray(const std::string& analysis, const std::string& name, const at::Tensor& t);
  /// /analyses/<analysis>/<name> as a scalar UTF-8 string dataset with attribute content_type=application/json.
  void writeAnalysisJson(const std::string& analysis, const std::string& name, const std::string& json);
  /// Sets a string attribute on the object at `path` ("/" = root); creates a group there if nothing exists.
  void setAttribute(const std::string& path, const std::string& key, const std::string& value);
  /// Sets a string attribute (C string).
  void setAttribute(const std::string& path, const std::string& key, const char* value);
  /// Sets an int64 attribute.
  void setAttribute(const std::string& path, const std::string& key, int64_t value);
  /// Sets a float64 attribute.
  void setAttribute(const std::string& path, const std::string& key, double value);

  /// Marks the file complete, flushes, closes, fsyncs and renames NAME.h5.partial → NAME.h5 (atomically
  /// replacing an older NAME.h5). Further writes throw.
  void commit();

  /// Whether commit() succeeded.
  [[nodiscard]] bool committed() const { return m_committed; }
  /// NAME.h5
  [[nodiscard]] const std::filesystem::path& finalPath() const { return m_finalPath; }
  /// NAME.h5.partial
  [[nodiscard]] const std::filesystem::path& partialPath() const { return m_partialPath; }
  /// The options in use.
  [[nodiscard]] const CacheOptions& options() const { return m_options; }
  /// The most tensor bytes the background thread held queued at once (0 without one).
  [[nodiscard]] int64_t peakQueuedBytes() const;
  /// Seconds the caller waited for room in the background queue, and seconds the background thread spent
  /// writing (both 0 without one; valid until commit()).
  [[nodiscard]] std::pair<double, double> backgroundSeconds() const;

 private:
  /// Creates a dataset in `s`'s file (any thread; takes Hdf5Lock); `finalPath` names the cache in messages.
  static DatasetWriter createDatasetIn(const std::shared_ptr<detail::WriterState>& s, const CacheOptions& options,
                                       const std::filesystem::path& finalPath, const std::string& path,
                                       std::vector<int64_t> shape, StorageDtype dtype, int singletonDims,
                                       bool wholeWrite, const MaskedTileLayout* tiles = nullptr);
  /// Converts `t` and writes it as one new dataset, then the axes attribute when `axes` is not empty, then
  /// Writeback::advance when `writeback` is set and the dataset is ≥ 8 MiB.
  static void writeWholeIn(const std::shared_ptr<detail::WriterState>& s, const CacheOptions& options,
                           const std::filesystem::path& finalPath, const std::string& path, const at::Tensor& t,
                           StorageDtype dtype, int singletonDims, const std::string& axes,
                           const std::shared_ptr<Writeback>& writeback);
  void writeWhole(const std::string& path, const at::Tensor& t, StorageDtype dtype, int singletonDims = -1);
  /// Writes `packed` as one new masked-tile dataset `abs` of `dtype`, then the axes attribute when not empty and
  /// Writeback::advance as writeWholeIn does.
  static void writePackedIn(const std::shared_ptr<detail::WriterState>& s, const CacheOptions& options,
                            const std::filesystem::path& finalPath, const std::string& abs, const PackedTiles& packed,
                            StorageDtype dtype, const std::string& axes, const std::shared_ptr<Writeback>& writeback);
  /// Queues to `writer` the write of map `t` (fp32 [batch, head, query, key]) as dataset `abs`: in masked tiles cut
  /// and packed here, on the calling thread, when options.maskedTilesBesideForward allows it, else whole (submitWholeTo).
  static void submitMapTo(BackgroundWriter& writer, const std::shared_ptr<detail::WriterState>& s, const CacheOptions& options,
                          const std::filesystem::path& finalPath, const std::string& abs, const std::string& hook,
                          const at::Tensor& t, const std::shared_ptr<Writeback>& writeback);
  /// Queues to `writer` the job that writes `t` whole at `abs` (writeWholeIn), holding `t` (not a copy) until then.
  static void submitWholeTo(BackgroundWriter& writer, const std::shared_ptr<detail::WriterState>& s, const CacheOptions& options,
                            const std::filesystem::path& finalPath, const std::string& abs, const at::Tensor& t,
                            StorageDtype dtype, int singletonDims, const std::string& axes,
                            const std::shared_ptr<Writeback>& writeback);
  /// writeWhole (+ an axes attribute when not empty), on the background thread when there is one.
  void writeWholeMaybeAsync(const std::string& path, const at::Tensor& t, StorageDtype dtype, int singletonDims,
                            const std::string& axes);
  /// Records `abs` as handed to the background thread; InputError when it already was (written twice).
  void claimQueuedPath(const std::string& abs);
  /// A hard link `linkPath` → the dataset `target` in `s`'s file (any thread; takes Hdf5Lock).
  static void linkIn(const std::shared_ptr<detail::WriterState>& s, const std::filesystem::path& finalPath,
                     const std::string& linkPath, const std::string& target);
  /// Waits for the background queue (rethrowing its first error); a no-op without one.
  void drain();
  /// Runs `job` on the background thread, accounted as `bytes`, or now on this one when there is none.
  void runOrSubmit(int64_t bytes, std::function<void()> job);
  /// unembed.hook_logits written as `t` after writeLogitRows streamed the forward's logits.
  void finishLogitStream(const at::Tensor& t);
  [[nodiscard]] StorageDtype activationDtype(const at::Tensor& t) const;

  std::shared_ptr<detail::WriterState> m_state;
  std::filesystem::path m_finalPath;
  std::filesystem::path m_partialPath;
  CacheOptions m_options;
  bool m_committed = false;
  std::vector<std::string> m_queued;         // paths handed to the background thread (duplicate check)
  std::unique_ptr<BackgroundWriter> m_background;  // destroyed first in ~CacheWriter (it writes into m_state)
  /// Forms deferred attention maps and queues them to m_background (writeDeferredMaps); started on first use,
  /// drained and destroyed before m_background.
  std::unique_ptr<BackgroundWriter> m_mapsWorker;
  std::shared_ptr<Writeback> m_writeback;    // early write-back of the .partial (null: off)
  at::Tensor m_hookedLogits;  // what unembed.hook_logits was written from, until writeLogits (held: no reused address)
  int64_t m_hookedLogitsVersion = -1;  // its version counter then (an in-place write since breaks the link)
  /// The logits writeLogitRows is streaming, until unembed.hook_logits is written.
  struct LogitStream {
    at::Tensor tensor;                       // the forward's logits [batch, pos, vocab] (held: memory not reused)
    int64_t received = 0;                    // positions final so far
    int64_t written = 0;                     // positions handed to the writer: whole chunks, then the rest
    int64_t chunkRows = 1;                   // positions per chunk of the dataset
    int64_t version = -1;                    // the tensor's version counter at the last call (-1: inference tensor)
    std::shared_ptr<DatasetWriter> dataset;  // filled in by the job that creates the dataset
  };
  std::unique_ptr<LogitStream> m_logitStream;
};

}  // namespace mechscope::store
