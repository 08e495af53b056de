// Fuzz harness: a JSONL dataset of prompt pairs (the IOI / Colored-Objects format of
// analysis/common/datasets.hpp). Reads the file, tokenizes missing ids with a tiny tokenizer and
// builds the patching tensors.
#include <ATen/ATen.h>

#include "analysis/common/datasets.hpp"
#include "fuzz/fuzz_support.hpp"

namespace {

const mechscope::Tokenizer& tiny() {
  static const mechscope::Tokenizer t = mechscope::Tokenizer::fromJson(
      R"({"model": {"type": "BPE", "vocab": {"a": 0, "b": 1, "ab": 2, " ": 3, "<s>": 4}, "merges": ["a b"]},
          "added_tokens": [{"id": 4, "content": "<s>", "special": true}]})",
      "tiny");
  return t;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace mechscope;
  const auto path = fuzz::writeTemp(fuzz::bytes(data, size), "dataset.jsonl");
  fuzz::expectCleanRefusal([&] {
    analysis::CausalDataset ds = analysis::readJsonl(path);
    analysis::tokenizeDataset(ds, &tiny(), size % 2 ? std::optional<int64_t>(4) : std::nullopt);
    int dropped = 0;
    for (const auto& g : analysis::toPatchGroups(ds, &dropped))
      if (g.inputs.clean.size(0) != g.inputs.correct.size(0) || g.promptIndex.size() != g.templateIds.size()) __builtin_trap();
  });
  return 0;
}
