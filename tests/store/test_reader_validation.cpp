// CacheReader validates a dataset against the cache schema before reading it (issue 12): ranks fixed
// by the schema, the axes attribute, element counts without overflow, and the logical size against
// the bytes stored (a corrupt header claiming terabytes is refused instead of allocated).
#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <hdf5.h>

#include <string>
#include <vector>

#include "core/common/errors.hpp"
#include "store/cache_reader.hpp"
#include "store/detail/h5_util.hpp"
#include "h5_test_cache.hpp"
#include "store_test_util.hpp"

using namespace mechscope;
using namespace mechscope::store;
using mechscope::store::testing::makeCache;
using mechscope::store::testing::ScratchDir;

namespace {

/// Writes `values` as an int64 dataset of `dims` at `name`.
void writeInt64(hid_t f, const char* name, const std::vector<hsize_t>& dims, const std::vector<int64_t>& values) {
  const hid_t space = H5Screate_simple(static_cast<int>(dims.size()), dims.data(), nullptr);
  const hid_t d = H5Dcreate2(f, name, H5T_STD_I64LE, space, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
  H5Dwrite(d, H5T_NATIVE_INT64, H5S_ALL, H5S_ALL, H5P_DEFAULT, values.data());
  H5Dclose(d);
  H5Sclose(space);
}

template <class Fn>
void expectInputError(Fn fn, const std::vector<std::string>& parts) {
  try {
    fn();
    ADD_FAILURE() << "no InputError; expected one mentioning '" << parts.front() << "'";
  } catch (const InputError& e) {
    const std::string msg = e.what();
    for (const auto& p : parts) EXPECT_NE(msg.find(p), std::string::npos) << "'" << p << "' not in: " << msg;
  }
}

}  // namespace

TEST(ReaderValidation, TokensMustBeRankTwo) {
  ScratchDir dir;
  const auto path = dir / "c.h5";
  makeCache(path, [](hid_t f) { writeInt64(f, "tokens", {1, 2, 2}, {1, 2, 3, 4}); });
  const auto r = CacheReader::open(path);
  expectInputError([&] { (void)r.tokens(); }, {path.string(), "/tokens", "has 3 dims", "[batch, pos]"});
}

TEST(ReaderValidation, HugeShapeWithoutDataIsRefusedBeforeAllocating) {
  ScratchDir dir;
  const auto path = dir / "c.h5";
  makeCache(path, [](hid_t f) {
    // 2^40 x 2^20 float32 (4 PiB) in chunks that were never written.
    const std::vector<hsize_t> dims{hsize_t{1} << 40, hsize_t{1} << 20}, chunk{1, 1024};
    const hid_t space = H5Screate_simple(2, dims.data(), nullptr);
    const hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
    H5Pset_chunk(dcpl, 2, chunk.data());
    const hid_t d = H5Dcreate2(f, "logits", H5T_IEEE_F32LE, space, H5P_DEFAULT, dcpl, H5P_DEFAULT);
    H5Dclose(d);
    H5Pclose(dcpl);
    H5Sclose(space);
  });
  const auto r = CacheReader::open(path);
  expectInputError([&] { (void)r.read("logits"); }, {path.string(), "/logits", "no data stored"});
}

TEST(ReaderValidation, ShapeLargerThanStoredBytes) {
  ScratchDir dir;
  const auto path = dir / "c.h5";
  makeCache(path, [](hid_t f) {
    writeInt64(f, "tokens", {2, 3}, {1, 2, 3, 4, 5, 6});
    // Chunked, uncompressed: only the first of 1000 chunks holds data.
    const std::vector<hsize_t> dims{1000, 4}, chunk{1, 4};
    const hid_t space = H5Screate_simple(2, dims.data(), nullptr);
    const hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
    H5Pset_chunk(dcpl, 2, chunk.data());
    const hid_t d = H5Dcreate2(f, "sparse", H5T_IEEE_F32LE, space, H5P_DEFAULT, dcpl, H5P_DEFAULT);
    const std::vector<hsize_t> start{0, 0}, count{1, 4};
    const hid_t mem = H5Screate_simple(2, count.data(), nullptr);
    H5Sselect_hyperslab(space, H5S_SELECT_SET, start.data(), nullptr, count.data(), nullptr);
    const float row[4] = {1, 2, 3, 4};
    H5Dwrite(d, H5T_NATIVE_FLOAT, mem, space, H5P_DEFAULT, row);
    H5Sclose(mem);
    H5Dclose(d);
    H5Pclose(dcpl);
    H5Sclose(space);
  });
  const auto r = CacheReader::open(path);
  expectInputError([&] { (void)r.read("sparse"); }, {path.string(), "/sparse", "needs 16000 bytes but only 16 are stored"});
  // The valid dataset beside it still reads, with its numbers.
  const at::Tensor t = r.tokens();
  ASSERT_EQ(t.sizes(), (at::IntArrayRef{2, 3}));
  EXPECT_EQ(t[1][2].item<int64_t>(), 6);
}

TEST(ReaderValidation, AxesAttributeMustMatchRank) {
  ScratchDir dir;
  const auto path = dir / "c.h5";
  makeCache(path, [](hid_t f) {
    H5Gclose(H5Gcreate2(f, "activations", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT));
    writeInt64(f, "activations/blocks.0.hook_resid_pre", {1, 2}, {7, 8});
    store::detail::writeStringAttr(f, "/activations/blocks.0.hook_resid_pre", "axes", "batch,pos,d_model");
  });
  const auto r = CacheReader::open(path);
  expectInputError([&] { (void)r.read("blocks.0.hook_resid_pre"); },
                   {path.string(), "blocks.0.hook_resid_pre", "axes attribute 'batch,pos,d_model' names 3 dims but the data has 2"});
}

TEST(ReaderValidation, TokenIdsMustBeIntegers) {
  ScratchDir dir;
  const auto path = dir / "c.h5";
  makeCache(path, [](hid_t f) {
    const std::vector<hsize_t> dims{1, 2};
    const hid_t space = H5Screate_simple(2, dims.data(), nullptr);
    const hid_t d = H5Dcreate2(f, "tokens", H5T_IEEE_F32LE, space, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    const float v[2] = {1.5f, 2.5f};
    H5Dwrite(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, v);
    H5Dclose(d);
    H5Sclose(space);
  });
  const auto r = CacheReader::open(path);
  expectInputError([&] { (void)r.tokens(); }, {path.string(), "/tokens", "stored as float32", "int64"});
}

TEST(ReaderValidation, HugeExtentBesideAZeroExtentIsRefused) {
  // Fuzz finding: /token_strings of shape [2^43, 0] holds no elements, so no size check fired, and the
  // reader sized 2^43 empty rows (≈ 200 TB) before reading nothing.
  ScratchDir dir;
  const auto path = dir / "c.h5";
  makeCache(path, [](hid_t f) {
    const std::vector<hsize_t> dims{hsize_t{1} << 43, 0};
    const hid_t space = H5Screate_simple(2, dims.data(), nullptr);
    const hid_t type = H5Tcopy(H5T_C_S1);
    H5Tset_size(type, H5T_VARIABLE);
    const hid_t d = H5Dcreate2(f, "token_strings", type, space, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    H5Dclose(d);
    H5Tclose(type);
    H5Sclose(space);
    writeInt64(f, "tokens", {hsize_t{1} << 43, 0}, {});
  });
  const auto r = CacheReader::open(path);
  expectInputError([&] { (void)r.tokenStrings(); }, {path.string(), "/token_strings", "beyond any real cache"});
  expectInputError([&] { (void)r.tokens(); }, {path.string(), "/tokens", "beyond any real cache"});
}
