// The same caches open in Python: h5py reads the TransformerLens names, shapes, dtypes and values
// (tests/store/check_h5py.py). Skipped when /usr/bin/python3 with h5py and numpy is absent.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <cstdlib>
#include <string>

#include "store/cache_writer.hpp"
#include "store/synthetic_cache.hpp"
#include "store_test_util.hpp"

using namespace mechscope;
using namespace mechscope::store;
using mechscope::store::testing::ScratchDir;

namespace {
void writeKnown(const std::filesystem::path& p, StorageDtype dtype) {
  CacheOptions o;
  o.dtype = dtype;
  CacheWriter w(p, Provenance{}, o);
  w.writeActivation("blocks.0.hook_resid_pre",
                    at::arange(24, at::TensorOptions().dtype(at::kFloat)).reshape({2, 3, 4}) / 8);  // exact in fp16/bf16
  w.commit();
}
}  // namespace

TEST(StoreH5py, PythonReadsTransformerLensNamesShapesAndValues) {
  if (std::system("/usr/bin/python3 -c 'import h5py, numpy' >/dev/null 2>&1") != 0)
    GTEST_SKIP() << "/usr/bin/python3 with h5py and numpy is not installed (Debian: python3-h5py)";
  ScratchDir dir;
  const SyntheticShape shape{3, 2, 10, 4, 32};
  streamSyntheticCache(dir / "synth.h5", shape);
  writeKnown(dir / "fp16.h5", StorageDtype::Float16);
  writeKnown(dir / "bf16.h5", StorageDtype::BFloat16);
  const std::string cmd = std::string("/usr/bin/python3 ") + MECHSCOPE_SOURCE_DIR + "/tests/store/check_h5py.py " +
                          (dir / "synth.h5").string() + " 3 2 10 4 32 " + (dir / "fp16.h5").string() + " " +
                          (dir / "bf16.h5").string();
  EXPECT_EQ(std::system(cmd.c_str()), 0) << cmd;
}
