#include "store/masked_tiles.hpp"

#include <ATen/ATen.h>

#include <fmt/format.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <memory>

#include "core/common/errors.hpp"
#include "store/hook_axes.hpp"

namespace mechscope::store {
namespace {

/// One element of `value` in `dtype`'s stored bytes (through toStorage, so the bits are the writer's own).
std::vector<unsigned char> storedBytes(double value, StorageDtype dtype) {
  const at::Tensor one = toStorage(at::full({1}, value, at::TensorOptions().dtype(at::kDouble)), dtype);
  const auto* p = static_cast<const unsigned char*>(one.data_ptr());
  return {p, p + storageElementSize(dtype)};
}

struct FreeDeleter {
  void operator()(void* p) const { std::free(p); }
};

}  // namespace

std::optional<MaskedTileLayout> maskedTileLayout(const std::string& path, const std::vector<int64_t>& shape,
                                                 StorageDtype dtype, int64_t chunkBytes) {
  if (shape.size() != 4) return std::nullopt;
  if (dtype != StorageDtype::Float32 && dtype != StorageDtype::Float16 && dtype != StorageDtype::BFloat16 &&
      dtype != StorageDtype::Float64)
    return std::nullopt;
  if (!isAttentionMapHook(path)) return std::nullopt;
  const double fill = hasSuffix(path, "hook_attn_scores") ? -std::numeric_limits<double>::infinity() : 0.0;
  for (auto d : shape)
    if (d <= 0) return std::nullopt;
  const int64_t element = storageElementSize(dtype);
  if (kMinMaskedTileSide * kMinMaskedTileSide * element > chunkBytes / 4) return std::nullopt;
  int64_t side = kMinMaskedTileSide;
  while ((2 * side) * (2 * side) * element <= chunkBytes / 4) side *= 2;
  const int64_t tq = std::min(side, shape[2]), tk = std::min(side, shape[3]), heads = shape[1];
  // Heads per chunk: as many tiles as fill chunkBytes (one large write instead of several small ones), a power of
  // two, or all the heads; padding the last group with fill-value heads is accepted up to an eighth of the heads.
  int64_t group = 1;
  while (2 * group * tq * tk * element <= chunkBytes) group *= 2;
  if (group >= heads) {
    group = heads;
  } else {
    while (group > 1 && ((heads + group - 1) / group * group - heads) * 8 > heads) group /= 2;
  }
  MaskedTileLayout layout;
  layout.chunk = {1, group, tq, tk};
  layout.fill = storedBytes(fill, dtype);
  return layout;
}

bool maskedTileCandidate(const std::string& path, const std::vector<int64_t>& shape, const std::vector<int64_t>& chunk) {
  if (shape.size() != 4 || chunk.size() != 4 || chunk[0] != 1 || chunk[1] < 1) return false;
  if (!isAttentionMapHook(path)) return false;
  for (int d = 2; d < 4; ++d)
    if (chunk[d] < std::min(kMinMaskedTileSide, shape[d])) return false;
  return true;
}

namespace {

/// The scan both forEachUnmaskedTile and packUnmaskedTiles make: for every chunk of `data` whose tiles hold an element
/// other than the fill value, in storage order, copies the chunk ([heads, tile, tile], padded with the fill value)
/// into `destination()` and then calls `emit(offset, bytes)`.
template <class Destination, class Emit>
int64_t copyUnmaskedTiles(const at::Tensor& data, const MaskedTileLayout& layout, const char* what,
                          Destination&& destination, Emit&& emit) {
  if (data.dim() != 4 || !data.is_contiguous() || data.device().type() != at::kCPU)
    throw Error(fmt::format("{}: expected a contiguous CPU tensor of rank 4", what));
  const auto element = static_cast<int64_t>(layout.fill.size());
  if (static_cast<int64_t>(data.element_size()) != element)
    throw Error(fmt::format("{}: {}-byte elements against a {}-byte fill value", what, data.element_size(), element));
  const int64_t B = data.size(0), H = data.size(1), Q = data.size(2), K = data.size(3);
  const int64_t hc = layout.chunk[1], tq = layout.chunk[2], tk = layout.chunk[3];
  // A row of fill values as long as a tile row: the comparand of every tile row and the padding's source.
  std::vector<unsigned char> fillRow(static_cast<size_t>(tk * element));
  for (int64_t i = 0; i < tk; ++i) std::memcpy(fillRow.data() + i * element, layout.fill.data(), element);
  const auto* base = static_cast<const unsigned char*>(data.data_ptr());
  auto headAt = [&](int64_t b, int64_t h) { return base + (b * H + h) * Q * K * element; };  // [query, key]
  int64_t written = 0;
  std::vector<int64_t> offset(4);
  for (int64_t b = 0; b < B; ++b)
    for (int64_t h0 = 0; h0 < H; h0 += hc) {
      const int64_t heads = std::min(hc, H - h0);
      for (int64_t q0 = 0; q0 < Q; q0 += tq)
        for (int64_t k0 = 0; k0 < K; k0 += tk) {
          const int64_t rows = std::min(tq, Q - q0), cols = std::min(tk, K - k0);
          const size_t rowBytes = static_cast<size_t>(cols * element);
          bool masked = true;
          for (int64_t h = 0; h < heads && masked; ++h)
            for (int64_t r = 0; r < rows && masked; ++r)
              masked = std::memcmp(headAt(b, h0 + h) + ((q0 + r) * K + k0) * element, fillRow.data(), rowBytes) == 0;
          if (masked) continue;
          unsigned char* chunk = destination();  // [head in group, tile row, tile column]
          for (int64_t h = 0; h < hc; ++h)
            for (int64_t r = 0; r < tq; ++r) {
              unsigned char* dst = chunk + (h * tq + r) * tk * element;
              if (h < heads && r < rows) {
                std::memcpy(dst, headAt(b, h0 + h) + ((q0 + r) * K + k0) * element, rowBytes);
                if (cols < tk) std::memcpy(dst + rowBytes, fillRow.data(), static_cast<size_t>((tk - cols) * element));
              } else {
                std::memcpy(dst, fillRow.data(), fillRow.size());
              }
            }
          offset = {b, h0, q0, k0};
          emit(offset, static_cast<const void*>(chunk));
          ++written;
        }
    }
  return written;
}

/// A 4 KiB-aligned allocation of `bytes` (rounded up to 4 KiB); Error when it cannot be had.
void* alignedChunkMemory(size_t bytes, const char* what) {
  void* p = std::aligned_alloc(4096, (bytes + 4095) / 4096 * 4096);
  if (!p) throw Error(fmt::format("{}: cannot allocate {} bytes of chunk buffer", what, bytes));
  return p;
}

}  // namespace

int64_t forEachUnmaskedTile(const at::Tensor& data, const MaskedTileLayout& layout,
                            const std::function<void(const std::vector<int64_t>& offset, const void* bytes)>& write) {
  std::unique_ptr<void, FreeDeleter> buffer(alignedChunkMemory(layout.chunkBytes(), "forEachUnmaskedTile"));
  return copyUnmaskedTiles(data, layout, "forEachUnmaskedTile", [&] { return static_cast<unsigned char*>(buffer.get()); },
                           write);
}

int64_t MaskedTileLayout::chunkBytes() const {
  return chunk.empty() ? 0 : chunk[1] * chunk[2] * chunk[3] * static_cast<int64_t>(fill.size());
}

PackedTiles packUnmaskedTiles(const at::Tensor& data, const MaskedTileLayout& layout) {
  PackedTiles packed;
  packed.layout = layout;
  packed.shape = data.sizes().vec();
  const auto chunkBytes = static_cast<size_t>(layout.chunkBytes());
  packed.stride = (chunkBytes + 4095) / 4096 * 4096;
  // Room for every chunk: a causal map keeps about half, and the pages of the rest are never touched.
  size_t chunks = 1;
  for (int d = 0; d < 4; ++d) chunks *= static_cast<size_t>((data.size(d) + layout.chunk[d] - 1) / layout.chunk[d]);
  auto* memory = static_cast<unsigned char*>(alignedChunkMemory(chunks * packed.stride, "packUnmaskedTiles"));
  packed.memory = std::shared_ptr<unsigned char>(memory, [](unsigned char* p) { std::free(p); });
  size_t next = 0;
  copyUnmaskedTiles(
      data, layout, "packUnmaskedTiles", [&] { return memory + (next++) * packed.stride; },
      [&](const std::vector<int64_t>& offset, const void*) { packed.offsets.push_back(offset); });
  return packed;
}

}  // namespace mechscope::store
