#pragma once
// Helpers shared by the libFuzzer harnesses (fuzz/fuzz_*.cpp). Each harness feeds arbitrary bytes to
// one loader; mechscope::Error (a clear refusal) is the expected outcome for bad input, anything
// else escaping (std::bad_alloc, nlohmann or c10 exceptions), a sanitizer report, a hang or an OOM
// is a finding. The same files build without libFuzzer into replay tests (fuzz/replay_main.cpp).

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <string>
#include <string_view>

#include "core/common/errors.hpp"
#include "tests/common/scratch_root.hpp"

namespace mechscope::fuzz {

/// The input as a string view.
inline std::string_view bytes(const uint8_t* data, size_t size) {
  return {reinterpret_cast<const char*>(data), size};
}

/// A per-process scratch file `<tmp>/mechscope-test-<pid>/fuzz/<name>` holding `data` (rewritten each call;
/// the folder goes when the process exits, tests/common/scratch_root.hpp).
inline std::filesystem::path writeTemp(std::string_view data, const std::string& name) {
  static const std::filesystem::path dir = mechscope::test::freshScratchDir("fuzz");
  const auto path = dir / name;
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(data.data(), static_cast<std::streamsize>(data.size()));
  return path;
}

/// Runs `fn`, swallowing mechscope::Error (the documented refusal); everything else propagates.
template <class Fn>
void expectCleanRefusal(Fn&& fn) {
  try {
    fn();
  } catch (const mechscope::Error&) {
  }
}

}  // namespace mechscope::fuzz
