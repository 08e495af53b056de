// The direct-write driver's queue (store/detail/write_queue.hpp, issue #24): pieces queued to several threads land
// at their own offsets (read back with pread and compared byte for byte); the first failure is reported once, with
// its offset, by the next wait(); a piece refused as misaligned by an O_DIRECT descriptor is written through the
// fallback descriptor instead. And a whole cache written with the queue reads back as one written a write at a time.
#include <ATen/ATen.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "store/cache_reader.hpp"
#include "store/cache_writer.hpp"
#include "store/detail/write_queue.hpp"
#include "store_test_util.hpp"

using namespace mechscope;
using namespace mechscope::store;
using mechscope::store::testing::ScratchDir;

namespace {

std::vector<unsigned char> queueBytes(std::size_t n, unsigned seed) {
  std::vector<unsigned char> v(n);
  for (std::size_t i = 0; i < n; ++i) v[i] = static_cast<unsigned char>((i * 131 + seed * 7 + (i >> 12)) & 0xff);
  return v;
}

std::vector<unsigned char> preadAll(int fd, std::size_t n) {
  std::vector<unsigned char> v(n);
  std::size_t done = 0;
  while (done < n) {
    const ssize_t r = ::pread(fd, v.data() + done, n - done, static_cast<off_t>(done));
    if (r <= 0) break;
    done += static_cast<std::size_t>(r);
  }
  v.resize(done);
  return v;
}

}  // namespace

TEST(StoreWriteQueue, PiecesLandAtTheirOffsetsInAnyOrder) {
  ScratchDir dir;
  const auto path = dir / "q.bin";
  const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  ASSERT_GE(fd, 0);
  constexpr std::size_t kPiece = 64 << 10, kPieces = 64;
  const std::vector<unsigned char> data = queueBytes(kPiece * kPieces, 1);
  std::atomic<unsigned long long> written{0};
  {
    mechscope::store::detail::WriteQueue q(4);
    for (std::size_t i = kPieces; i-- > 0;) {  // last piece first
      mechscope::store::detail::QueuedWrite w;
      w.fd = fd;
      w.offset = static_cast<off_t>(i * kPiece);
      w.p = data.data() + i * kPiece;
      w.size = kPiece;
      w.writtenCounter = &written;
      q.submit(w);
    }
    EXPECT_EQ(q.wait().err, 0);
    EXPECT_FALSE(q.busy());
  }
  EXPECT_EQ(written.load(), data.size());
  EXPECT_EQ(preadAll(fd, data.size() + 1), data);
  ::close(fd);
}

TEST(StoreWriteQueue, TheFirstFailureIsReportedOnceWithItsOffset) {
  ScratchDir dir;
  const auto path = dir / "ro.bin";
  { const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644); ASSERT_GE(fd, 0); ::close(fd); }
  const int readOnly = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  ASSERT_GE(readOnly, 0);
  const std::vector<unsigned char> data = queueBytes(4096, 2);
  mechscope::store::detail::WriteQueue q(2);
  mechscope::store::detail::QueuedWrite w;
  w.fd = readOnly;
  w.offset = 8192;
  w.p = data.data();
  w.size = data.size();
  q.submit(w);
  const mechscope::store::detail::WriteFailure f = q.wait();
  EXPECT_EQ(f.err, EBADF);
  EXPECT_EQ(f.offset, 8192);
  EXPECT_EQ(f.size, data.size());
  EXPECT_EQ(q.wait().err, 0) << "reported once";
  ::close(readOnly);
}

TEST(StoreWriteQueue, AMisalignedDirectPieceGoesThroughTheFallback) {
  ScratchDir dir;
  const auto path = dir / "dio.bin";
  const int dfd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_DIRECT | O_CLOEXEC, 0644);
  if (dfd < 0) GTEST_SKIP() << "no O_DIRECT in " << dir.path() << " (tmpfs on an older kernel)";
  const int fd = ::open(path.c_str(), O_RDWR | O_CLOEXEC);
  ASSERT_GE(fd, 0);
  const std::vector<unsigned char> data = queueBytes(8192 + 3, 3);  // from byte 3: a misaligned buffer
  std::atomic<unsigned long long> direct{0}, fallback{0};
  mechscope::store::detail::WriteQueue q(2);
  mechscope::store::detail::QueuedWrite w;
  w.fd = dfd;
  w.fallbackFd = fd;
  w.p = data.data() + 3;
  w.size = 8192;
  w.writtenCounter = &direct;
  w.fallbackCounter = &fallback;
  q.submit(w);
  EXPECT_EQ(q.wait().err, 0);
  EXPECT_TRUE(q.refusedByFd());
  EXPECT_EQ(direct.load() + fallback.load(), 8192u);
  EXPECT_EQ(preadAll(fd, 8192), std::vector<unsigned char>(data.begin() + 3, data.end()));
  ::close(fd);
  ::close(dfd);
}

// The same tensors cached with one writer thread and with eight read back identically (and as written).
TEST(StoreWriteQueue, CachesWrittenByOneOrManyThreadsAreTheSame) {
  ScratchDir dir;
  const at::Tensor pattern = at::softmax(at::randn({1, 4, 1024, 1024}), -1);  // 16 MiB: 16 chunks of 1 MiB
  const at::Tensor resid = at::randn({1, 1024, 768});
  for (const int threads : {1, 8}) {
    SCOPED_TRACE(threads);
    CacheOptions o;
    o.directWriteThreads = threads;
    o.backgroundBytes = threads > 1 ? (int64_t{64} << 20) : 0;
    const auto file = dir / (threads == 1 ? "one.h5" : "eight.h5");
    {
      CacheWriter w(file, Provenance{}, o);
      w.writeActivation("blocks.0.attn.hook_pattern", pattern);
      w.writeActivation("blocks.0.hook_resid_pre", resid);
      w.commit();
    }
    const auto r = CacheReader::open(file);
    EXPECT_TRUE(at::equal(r.read("blocks.0.attn.hook_pattern"), pattern));
    EXPECT_TRUE(at::equal(r.read("blocks.0.hook_resid_pre"), resid));
  }
}
