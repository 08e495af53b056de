#pragma once
// The cache writer's libhdf5 file driver (internal; it includes <hdf5.h>): the POSIX I/O of libhdf5's
// default `sec2` driver, except that large raw-data writes go around the page cache. A dataset's chunk
// (≥ 64 KiB, placed on a 4 KiB boundary by H5Pset_alignment) is written through a second descriptor
// opened with O_DIRECT, straight from the tensor's memory when that is aligned for direct I/O, else
// through one reused 4 MiB aligned buffer; the unaligned ends of a write and all metadata go through the
// ordinary descriptor. The kernel then neither copies the bytes into page-cache pages nor does ext4's
// per-page delayed-allocation bookkeeping: on the 2-core VM of docs/benchmarks.md 3 GB written with
// 1 MiB direct writes cost 0.28 s of kernel CPU against 2.0 s buffered (`dd`). The file is plain HDF5
// (no driver information in the superblock): h5py and every reader open it with the default driver.
// Inside a ParallelDirectWrites scope the direct writes are queued to a few writer threads instead (see
// there), so a disk that serves several requests at once is kept busy.
// Where O_DIRECT is refused (tmpfs on older kernels, some network filesystems) or a direct write is
// refused as misaligned, the write is buffered, exactly as sec2 would do it. Errors carry the sec2
// driver's wording ("errno = 28, error message = 'No space left on device'") on libhdf5's error stack.
#include <hdf5.h>

#include <cstddef>
#include <vector>
#if __has_include(<H5FDdevelop.h>)
#include <H5FDdevelop.h>  // libhdf5 ≥ 1.13: H5FD_class_t moved out of H5FDpublic.h
#endif

namespace mechscope::store::detail {

/// Registers the driver once per process (caller holds Hdf5Lock) and returns its id; -1 on failure.
hid_t directWriteDriver();

/// Sets this driver on a file-access property list, with H5Pset_alignment(4 KiB for objects ≥ 64 KiB) so
/// that chunks start on direct-I/O boundaries. Returns false (leaving `fapl` as it was) when the driver
/// cannot be registered. Caller holds Hdf5Lock.
bool useDirectWrites(hid_t fapl);

/// While alive on the calling thread, the large aligned raw-data writes that libhdf5 makes through this driver
/// straight from the caller's buffer [buffer, buffer + bytes) (the chunks of one H5Dwrite from it) are queued to a few writer threads per file and written at the same time,
/// in pieces of ≤ 2 MiB, instead of one after the other before each driver call returns. Their bytes are the
/// caller's, not copied: the caller keeps that buffer untouched until finish() returns (writes from libhdf5's
/// own buffers, which it may free at once, are made in turn as before), and libhdf5 never writes the same bytes
/// of a file twice from one buffer within one H5Dwrite. Every other driver call (reads,
/// metadata, truncation, closing) first waits for the queued writes. One scope per thread at a time.
class ParallelDirectWrites {
 public:
  /// Opens the scope for writes from [buffer, buffer + bytes) by `writerThreads` threads per file (1..16; 1: no
  /// queue, every write made in turn; a file keeps the count of the first scope that queued to it).
  ParallelDirectWrites(const void* buffer, std::size_t bytes, int writerThreads);
  ParallelDirectWrites(const ParallelDirectWrites&) = delete;
  ParallelDirectWrites& operator=(const ParallelDirectWrites&) = delete;
  /// finish(), its failure dropped (call finish() to see it).
  ~ParallelDirectWrites();
  /// Waits for every write queued in this scope; false after pushing the first failure onto libhdf5's error
  /// stack, in the sec2 driver's wording ("errno = 28, ..."). Ends the scope. Caller holds Hdf5Lock.
  bool finish();

  /// The caller's buffer (internal to the driver).
  const unsigned char* begin = nullptr;
  const unsigned char* end = nullptr;
  int threads = 1;
  /// The files that queued writes in this scope (internal to the driver).
  std::vector<void*> files;

 private:
  bool m_finished = false;
};

/// Raw-data bytes the driver wrote with O_DIRECT and through the ordinary descriptor since the process
/// started (for benchmarks and tests; every file written with the driver counts).
struct DirectWriteCounters {
  unsigned long long directBytes = 0;    ///< written with O_DIRECT straight from the caller's memory
  unsigned long long bouncedBytes = 0;   ///< written with O_DIRECT through the aligned copy buffer
  unsigned long long bufferedBytes = 0;  ///< raw data written through the page cache (ends, small or refused)
};
/// The counters so far.
DirectWriteCounters directWriteCounters();

}  // namespace mechscope::store::detail
