// Fuzz harness: encode arbitrary bytes (invalid UTF-8 included) with real tokenizers (GPT-2 byte-level
// BPE and Llama-2 SentencePiece-style from shared/fixtures when present, else a tiny built-in one),
// then decode, display and map offsets back; offsets must stay inside the text.
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <vector>

#include "core/tokenizer/tokenizer.hpp"
#include "fuzz/fuzz_support.hpp"

namespace {

std::vector<mechscope::Tokenizer>& tokenizers() {
  static std::vector<mechscope::Tokenizer> v;
  return v;
}

// A small byte-level BPE in case the fixtures are absent.
constexpr const char* kTiny = R"({"model": {"type": "BPE", "vocab": {"a": 0, "b": 1, "ab": 2, "Ġ": 3, "Ġa": 4, "<s>": 5},
  "merges": ["a b", "Ġ a"]}, "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": false, "use_regex": true},
  "decoder": {"type": "ByteLevel"}, "added_tokens": [{"id": 5, "content": "<s>", "special": true}]})";

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  namespace fs = std::filesystem;
  const char* env = std::getenv("MECHSCOPE_SHARED");
  const fs::path shared = env ? fs::path(env) : fs::path(MECHSCOPE_SOURCE_DIR) / ".." / "shared";
  for (const char* name : {"gpt2", "llama2", "qwen3"}) {
    const auto p = shared / "fixtures" / "tokenizers" / name;
    std::error_code ec;
    if (fs::exists(p / "tokenizer.json", ec)) tokenizers().push_back(mechscope::Tokenizer::fromFile(p));
  }
  tokenizers().push_back(mechscope::Tokenizer::fromJson(kTiny, "tiny"));
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace mechscope;
  if (tokenizers().empty()) LLVMFuzzerInitialize(nullptr, nullptr);
  const auto text = fuzz::bytes(data, size);
  for (const auto& tok : tokenizers()) {
    fuzz::expectCleanRefusal([&] {
      const Encoding e = tok.encode(text, size % 2 == 0);
      if (e.ids.size() != e.tokens.size() || e.ids.size() != e.offsets.size()) __builtin_trap();
      for (const auto& [b, en] : e.offsets)
        if (b > en || en > text.size()) __builtin_trap();  // code-point offsets never pass the byte length
      (void)tok.decode(e.ids, true);
      for (size_t i = 0; i < e.ids.size() && i < 16; ++i) (void)tok.displayToken(e.ids[i]);
      (void)tokensInCharSpan(e, 0, text.size() / 2);
    });
  }
  return 0;
}
