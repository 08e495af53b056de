// Fuzz harness: tokenizer.json. The input is "JSON\0TEXT": the JSON part is loaded as a tokenizer.json
// (every normalizer, pre-tokenizer, model, post-processor and decoder reader), then TEXT (or a fixed
// sentence when there is no NUL) is encoded, decoded and displayed token by token.
#include <algorithm>
#include <cstring>

#include "core/tokenizer/tokenizer.hpp"
#include "fuzz/fuzz_support.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace mechscope;
  const auto in = fuzz::bytes(data, size);
  const auto nul = in.find('\0');
  const std::string json(in.substr(0, nul));
  const std::string_view text = nul == std::string_view::npos ? std::string_view("Hello world, it's 2024!  ok") : in.substr(nul + 1);
  fuzz::expectCleanRefusal([&] {
    const Tokenizer tok = Tokenizer::fromJson(json, "fuzz/tokenizer.json");
    const Encoding e = tok.encode(text, true);
    if (e.ids.size() != e.tokens.size() || e.ids.size() != e.offsets.size()) __builtin_trap();
    (void)tok.decode(e.ids, false);
    (void)tok.decode(e.ids, true);
    const int64_t n = std::min<int64_t>(tok.vocabSize(), 64);
    for (int64_t id = -1; id <= n; ++id) (void)tok.displayToken(id);
    (void)tok.bosId();
  });
  return 0;
}
