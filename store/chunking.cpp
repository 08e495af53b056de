#include "store/chunking.hpp"

#include <algorithm>

namespace mechscope::store {

std::vector<int64_t> chooseChunkShape(const std::vector<int64_t>& shape, int elementSize, int64_t targetBytes,
                                      int singletonDims) {
  if (shape.empty()) return {};
  for (auto d : shape)
    if (d <= 0) return {};
  const int64_t target = std::max<int64_t>(1, targetBytes / std::max(1, elementSize));
  std::vector<int64_t> chunk(shape.size(), 1);
  // rest[i] = product of shape[i+1:]
  int64_t rest = 1;
  std::vector<int64_t> restAfter(shape.size());
  for (size_t i = shape.size(); i-- > 0;) {
    restAfter[i] = rest;
    rest = rest > target ? rest : rest * shape[i];  // saturate once beyond the target
  }
  const size_t rank = shape.size();
  size_t first = singletonDims < 0 ? (rank >= 3 ? 1 : 0) : static_cast<size_t>(singletonDims);
  first = std::min(first, rank - 1);  // the last dim is never forced to 1
  for (size_t i = first; i < rank; ++i) {
    if (restAfter[i] <= target) {
      chunk[i] = std::clamp<int64_t>(target / restAfter[i], 1, shape[i]);
      for (size_t j = i + 1; j < shape.size(); ++j) chunk[j] = shape[j];
      return chunk;
    }
  }
  // Even the last dim alone is larger than the target: cut it.
  chunk.back() = std::min(shape.back(), target);
  return chunk;
}

}  // namespace mechscope::store

namespace mechscope::store {

int chunkSingletonDims(const std::string& axes) { return axes.rfind("batch,head,", 0) == 0 ? 2 : -1; }

}  // namespace mechscope::store
