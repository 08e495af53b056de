#pragma once
// The planted model's word-level vocabulary and the ±Hadamard codes that carry token identity in
// its residual stream (see docs/planted-models.md).
#include <cstdint>
#include <string>
#include <vector>

namespace mechscope::planted {

/// What a vocabulary word is used for; the planted heads read these categories.
enum class WordKind { Bos, Unk, Name, Colour, Object, Place, Delimiter, Punctuation, Function, Needle, Filler };

/// One vocabulary entry.
struct Word {
  std::string text;
  WordKind kind;
};

/// Code dimension: token identities are rows 1..31 of a 32×32 Sylvester–Hadamard matrix, with sign.
inline constexpr int kCodeDim = 32;

/// The fixed vocabulary (index = token id). Token 0 is `<|endoftext|>` (BOS/EOS), which has no code.
const std::vector<Word>& vocabulary();
/// Token id of a word; throws InputError for words not in the vocabulary.
int64_t tokenId(const std::string& word);
/// Ids of every word of a kind, in id order.
std::vector<int64_t> idsOfKind(WordKind kind);
/// The identity code of a token: [kCodeDim] entries ±1/sqrt(32), zero-sum; all zeros for BOS.
std::vector<float> tokenCode(int64_t id);
/// The designated secondary-sink token (";").
inline constexpr const char* kDelimiter = ";";

}  // namespace mechscope::planted
