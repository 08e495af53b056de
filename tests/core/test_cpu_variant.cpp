// The cpu-matrix label (issue 20) reruns the numeric areas under each LibTorch CPU kernel and with 1 and
// 2 threads. This proves the variant asked for through the environment is the one in effect, so a
// matrix run cannot silently test the default kernel six times.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <ATen/Version.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <string>

namespace {

/// "CPU capability usage: AVX2" from LibTorch's build summary, upper-cased; empty when absent.
std::string capabilityInUse() {
  const std::string config = at::show_config();
  const std::string key = "CPU capability usage: ";
  const auto at = config.find(key);
  if (at == std::string::npos) return {};
  std::string value = config.substr(at + key.size(), config.find('\n', at) - at - key.size());
  std::transform(value.begin(), value.end(), value.begin(), [](unsigned char c) { return std::toupper(c); });
  return value;
}

}  // namespace

TEST(CpuVariant, RequestedKernelAndThreadsAreInEffect) {
  // A tiny kernel call first, so LibTorch has resolved its dispatch before we ask.
  (void)(at::ones({8}) * 2).sum().item<float>();
  const std::string inUse = capabilityInUse();
  std::printf("[cpu-variant] ATEN_CPU_CAPABILITY=%s in use: %s, threads %d\n",
              std::getenv("ATEN_CPU_CAPABILITY") ? std::getenv("ATEN_CPU_CAPABILITY") : "(unset)", inUse.c_str(),
              at::get_num_threads());
  if (const char* asked = std::getenv("ATEN_CPU_CAPABILITY")) {
    std::string want = asked;
    std::transform(want.begin(), want.end(), want.begin(), [](unsigned char c) { return std::toupper(c); });
    if (want == "DEFAULT") want = "NO AVX";  // LibTorch's name for the scalar/SSE kernels
    if (inUse.empty()) GTEST_SKIP() << "this LibTorch's show_config() does not report its CPU capability";
    EXPECT_EQ(inUse, want);
  }
  if (const char* threads = std::getenv("OMP_NUM_THREADS")) {
    EXPECT_EQ(at::get_num_threads(), std::atoi(threads));
  }
}
