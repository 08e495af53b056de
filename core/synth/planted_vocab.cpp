#include "core/synth/planted_vocab.hpp"

#include <cmath>

#include <fmt/format.h>

#include "core/common/errors.hpp"

namespace mechscope::planted {

const std::vector<Word>& vocabulary() {
  using K = WordKind;
  // Ids 1..31 take the positive Hadamard rows 1..31, ids 32..61 the negated ones (antipodes of 1..30).
  // Names and colours sit in the positive half so the movers' "any movable token" query is +1 on them.
  static const std::vector<Word> words = {
      {"<|endoftext|>", K::Bos}, {"<unk>", K::Unk},
      {"Mary", K::Name}, {"John", K::Name}, {"Alice", K::Name}, {"Bob", K::Name},
      {"Anna", K::Name}, {"James", K::Name}, {"Sarah", K::Name}, {"David", K::Name},
      {"red", K::Colour}, {"orange", K::Colour}, {"yellow", K::Colour}, {"green", K::Colour},
      {"blue", K::Colour}, {"purple", K::Colour}, {"brown", K::Colour}, {"black", K::Colour},
      {"pen", K::Object}, {"cup", K::Object}, {"ball", K::Object}, {"book", K::Object},
      {"ring", K::Object}, {"bowl", K::Object},
      {"store", K::Place}, {"park", K::Place}, {"table", K::Place},
      {";", K::Delimiter}, {".", K::Punctuation}, {",", K::Punctuation}, {"When", K::Function},
      // ---- 31 is the last positive row; 32..61 are antipodes of 1..30
      {"Then", K::Function}, {"and", K::Function}, {"were", K::Function}, {"at", K::Function},
      {"the", K::Function}, {"gave", K::Function}, {"a", K::Function}, {"to", K::Function},
      {"had", K::Function}, {"fun", K::Function}, {"On", K::Function}, {"I", K::Function},
      {"see", K::Function}, {"The", K::Function}, {"is", K::Function},
      {"magic", K::Needle}, {"number", K::Needle}, {"seven", K::Needle}, {"hundred", K::Needle},
      {"twelve", K::Needle},
      {"day", K::Filler}, {"was", K::Filler}, {"long", K::Filler}, {"quiet", K::Filler},
      {"in", K::Filler}, {"town", K::Filler}, {"people", K::Filler}, {"walked", K::Filler},
      {"along", K::Filler}, {"river", K::Filler}, {"sun", K::Filler},
  };
  return words;
}

int64_t tokenId(const std::string& word) {
  const auto& v = vocabulary();
  for (size_t i = 0; i < v.size(); ++i)
    if (v[i].text == word) return static_cast<int64_t>(i);
  throw InputError(fmt::format("planted model: '{}' is not in the planted vocabulary", word));
}

std::vector<int64_t> idsOfKind(WordKind kind) {
  std::vector<int64_t> out;
  const auto& v = vocabulary();
  for (size_t i = 0; i < v.size(); ++i)
    if (v[i].kind == kind) out.push_back(static_cast<int64_t>(i));
  return out;
}

std::vector<float> tokenCode(int64_t id) {
  std::vector<float> code(kCodeDim, 0.0f);
  if (id <= 0) return code;  // BOS carries no identity: heads that fall back on it copy nothing
  // Row 0 of the Hadamard matrix is all ones (not zero-sum), so rows 1..31 are used:
  // ids 1..31 → +rows 1..31, ids 32..62 → −rows 1..31 (id t+31 is the antipode of id t).
  constexpr int64_t kRows = kCodeDim - 1;
  const bool negative = id > kRows;
  const auto row = static_cast<unsigned>(negative ? id - kRows : id);
  const float s = (negative ? -1.0f : 1.0f) / std::sqrt(static_cast<float>(kCodeDim));
  for (unsigned c = 0; c < static_cast<unsigned>(kCodeDim); ++c)
    code[c] = (__builtin_popcount(row & c) % 2 == 0) ? s : -s;  // Sylvester: H[r][c] = (-1)^popcount(r&c)
  return code;
}

}  // namespace mechscope::planted
