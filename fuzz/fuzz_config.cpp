// Fuzz harness: config.json. Parses the bytes as a model folder's config.json (size/depth limits,
// family lookup by model_type, the family's key reader, consistency checks) and prints the summary.
#include "core/model/model_config.hpp"
#include "fuzz/fuzz_support.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace mechscope;
  const auto path = fuzz::writeTemp(fuzz::bytes(data, size), "config.json");
  fuzz::expectCleanRefusal([&] {
    const ModelConfig cfg = ModelConfig::fromJsonFile(path);
    (void)cfg.summary();
  });
  return 0;
}
