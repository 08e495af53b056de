// Fuzz harness: a .safetensors file (8-byte header length, JSON header, data section). Opens it
// (header validation: length cap, JSON, dtypes, shape × dtype size == byte range, ranges inside the
// file and non-overlapping) and reads every tensor, as stored and converted to float32.
#include <ATen/ATen.h>

#include "core/safetensors/safetensors_file.hpp"
#include "fuzz/fuzz_support.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace mechscope;
  const auto path = fuzz::writeTemp(fuzz::bytes(data, size), "model.safetensors");
  fuzz::expectCleanRefusal([&] {
    const auto f = SafetensorsFile::open(path);
    for (const auto& name : f.names()) {
      const TensorInfo& info = f.info(name);
      const at::Tensor t = f.tensor(name);  // [shape...]
      if (static_cast<size_t>(t.numel()) * elementSize(info.dtype) != info.end - info.begin) __builtin_trap();
      if (t.numel() > 0) (void)t.to(at::kFloat).sum().item<float>();  // touches every byte of the range
    }
    (void)f.metadata();
    (void)f.headerBytes();
  });
  return 0;
}
