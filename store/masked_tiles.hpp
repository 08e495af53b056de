#pragma once
// Attention patterns and scores ([batch, head, query, key]) are mostly the causal mask's value: zeros in a
// pattern, −∞ in the scores, over the upper triangle (and outside a sliding window's band). The store keeps
// such datasets in square tiles and writes only the tiles that hold something other than that value; HDF5
// gives the dataset's fill value (recorded as that same value) for every tile never written, so h5py and
// every reader see exactly the tensor that was cached. At 1,024 tokens and 256-wide tiles 6 of 16 tiles per
// head are skipped; at 8K tokens 496 of 1,024. One chunk holds the same tile of a few heads (the mask is the
// same for every head), and it is skipped only when each element of each of its tiles has the fill value's
// exact bits (−0.0 is not +0.0), so nothing depends on how the mask was made: a hook that wrote into the
// masked region of one head, or a model without a causal mask, simply gets those chunks written.
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/common/tensor.hpp"
#include "store/storage_dtype.hpp"

namespace mechscope::store {

/// The smallest tile side the writer uses, and the smallest a reader accepts as masked tiles.
inline constexpr int64_t kMinMaskedTileSide = 64;

/// A reader accepts a masked-tile dataset whose stored bytes are at least 1/this of its logical size (a
/// causal map stores about half; a 4K sliding window over 128K tokens with 256-wide tiles ≈ 1/28). Like the
/// bound on compressed data, it keeps a corrupt header from making a reader allocate without limit.
inline constexpr uint64_t kMaxMaskedTileRatio = 1024;

/// Whether dataset `path` of `shape` could hold masked tiles: an attention pattern or scores of rank 4,
/// chunked [1, g, a, b] (any g ≥ 1 heads) with each of a, b at least kMinMaskedTileSide or the whole dim.
bool maskedTileCandidate(const std::string& path, const std::vector<int64_t>& shape, const std::vector<int64_t>& chunk);

/// How an attention-shaped dataset is tiled and which value its skipped tiles hold.
struct MaskedTileLayout {
  std::vector<int64_t> chunk;      ///< [1, heads per chunk, tile, tile], the tile cut to the query and key lengths
  std::vector<unsigned char> fill; ///< one element of the fill value, in the storage dtype's bytes
  /// The bytes of one chunk ([heads per chunk, tile, tile] elements).
  [[nodiscard]] int64_t chunkBytes() const;
};

/// The layout for dataset `path` of `shape` stored as `dtype`, when it is an attention pattern
/// (`…hook_pattern`, fill 0) or attention scores (`…hook_attn_scores`, fill −∞) of rank 4 with float storage;
/// std::nullopt for every other dataset. The tile side is the largest power of two whose tile fits a quarter
/// of `chunkBytes`: 256 for fp32 and fp16 at the default 1 MiB; below kMinMaskedTileSide (chunk targets under
/// 64 KiB) the dataset is not tiled. A chunk holds the same tile of several heads (a causal or sliding-window
/// mask is the same for every head): the largest power of two whose tiles fit `chunkBytes` (4 heads of
/// 256² fp32 tiles at 1 MiB), or every head when fewer; halved while it would pad the last group with more
/// than an eighth of the heads. One chunk is one write, as large as a row band's (whether that helps depends on
/// the disk: `dd oflag=direct` wrote 1 MiB blocks faster than 256 KiB ones on this project's VM, not on the GPU
/// boxes; docs/benchmarks.md, eighth caching pass).
std::optional<MaskedTileLayout> maskedTileLayout(const std::string& path, const std::vector<int64_t>& shape,
                                                 StorageDtype dtype, int64_t chunkBytes);

/// Calls `write(offset, bytes)` for every chunk of `data` (contiguous, on the CPU, already in the storage dtype,
/// rank 4) whose tiles hold an element other than the fill value in any of its heads, in storage order;
/// `offset` is the chunk's first element ([b, h0, q0, k0]) and `bytes` a whole chunk ([heads, tile, tile];
/// heads, rows and columns past the data's end set to the fill value) in a 4 KiB-aligned buffer that is
/// reused after the call. Returns the chunks written.
int64_t forEachUnmaskedTile(const at::Tensor& data, const MaskedTileLayout& layout,
                            const std::function<void(const std::vector<int64_t>& offset, const void* bytes)>& write);

/// The chunks forEachUnmaskedTile writes, copied once into one buffer, to be written later by another thread.
struct PackedTiles {
  MaskedTileLayout layout;                    ///< how the dataset is tiled
  std::vector<int64_t> shape;                 ///< the dataset's shape [batch, head, query, key]
  std::shared_ptr<unsigned char> memory;      ///< 4 KiB-aligned; chunk i at memory + i × stride
  size_t stride = 0;                          ///< layout.chunkBytes() rounded up to 4 KiB
  std::vector<std::vector<int64_t>> offsets;  ///< chunk i's first element [b, h0, q0, k0], in storage order
  /// Chunk i's bytes.
  [[nodiscard]] const unsigned char* chunk(size_t i) const { return memory.get() + i * stride; }
  /// The bytes the chunks hold (what writing them costs).
  [[nodiscard]] int64_t bytes() const { return static_cast<int64_t>(offsets.size()) * layout.chunkBytes(); }
};

/// The chunks of `data` (as for forEachUnmaskedTile) packed one after another into 4 KiB-aligned memory, so that a
/// writer can hand each to the disk straight from there (O_DIRECT, no copy). The memory reserved is the whole
/// tensor's, but only the kept chunks' pages are touched.
PackedTiles packUnmaskedTiles(const at::Tensor& data, const MaskedTileLayout& layout);

}  // namespace mechscope::store
